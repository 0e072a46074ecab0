/**
 * A stop flag for a run inside ORT. ORT checks its run options' `terminate` flag before each kernel,
 * but ORT-web gives no handle on a started run's options, and Chromium lets a terminated worker
 * compute on for 2 s (Blink's kForcibleTerminationDelay). So this wraps the WASM instance's exports
 * to catch the run options created for our runs (marked by their log verbosity), finds the flag's
 * offset once by comparing options created with and without it (20 in ORT-web 1.30), and tells the
 * main thread where the flag lies in the shared WASM memory: it can set it while this thread computes.
 * Where any of that fails (no shared memory, another ORT layout), runs carry no flag.
 *
 * Once the run ends ORT frees its options, and the next run's may take the same bytes: a flag set
 * late (a stop that crossed the run's end) would end that next run ("Exiting due to terminate flag").
 * So a shared word holds the flagged run's number while it may be stopped: the main thread claims it
 * (negated) around its write, and this thread clears it, waiting out a claim, before ORT releases the
 * options (caught by their pointer) or, failing that, when the run returns.
 */

/** Log verbosity that marks our runs' options (verbosity only matters at the verbose severity). */
export const RUN_MARK = 0x5ee5

/**
 * Where a started run's stop flag lies: set the byte `at` of `buffer` to 1, only while the word in
 * `ctl` still holds `seq` (claim it as -seq around the write, then put seq back).
 */
export type RunStop = { buffer: SharedArrayBuffer; at: number; ctl: SharedArrayBuffer; seq: number }

type CreateRunOptions = (severity: number, verbosity: number, terminate: boolean, tag: number) => number

/** The flag's offset in ORT's run options: undefined until probed, null if the probe failed. */
let flagAt: number | null | undefined
let listener: ((stop: RunStop) => void) | undefined
/** The flagged run's number while it may be stopped, else 0; its options' pointer. */
const ctl = typeof SharedArrayBuffer === 'function' ? new Int32Array(new SharedArrayBuffer(4)) : undefined
let seq = 0
let current = 0

/** Ends the flagged run's stop window: from now on the main thread leaves its flag alone. */
export function endRunStop(): void {
  current = 0
  if (!ctl) return
  for (;;) {
    const v = Atomics.load(ctl, 0)
    // Negative: the main thread is between its claim and its write (two stores): wait it out.
    if (v >= 0 && Atomics.compareExchange(ctl, 0, v, 0) === v) return
  }
}

/** Called with the stop flag of each marked run, just before ORT starts computing it. */
export function onRunStop(fn: (stop: RunStop) => void): void {
  listener = fn
}

function caught(
  create: CreateRunOptions,
  args: Parameters<CreateRunOptions>,
  ptr: number,
  mem: WebAssembly.Memory,
) {
  if (typeof SharedArrayBuffer !== 'function' || !(mem.buffer instanceof SharedArrayBuffer) || !ptr) return
  if (flagAt === undefined) {
    // The same options with terminate set, and again without: the flag is the one byte that is 0, 1,
    // 0 in the three (others differ too: pointers). Leaks two small structs per worker.
    const [a, b, c] = [ptr, create(args[0], RUN_MARK, true, 0), create(args[0], RUN_MARK, false, 0)].map(
      (p) => new Uint8Array(mem.buffer, p, 32),
    ) as [Uint8Array, Uint8Array, Uint8Array]
    const at = [...a.keys()].filter((i) => a[i] === 0 && b[i] === 1 && c[i] === 0)
    flagAt = at.length === 1 && b.byteOffset && c.byteOffset ? at[0]! : null
  }
  if (flagAt === null || !ctl) return
  endRunStop()
  seq = (seq % 0x7fff_ffff) + 1
  current = ptr
  Atomics.store(ctl, 0, seq)
  listener?.({ buffer: mem.buffer, at: ptr + flagAt, ctl: ctl.buffer as SharedArrayBuffer, seq })
}

function memoryOf(imports: WebAssembly.Imports | undefined): WebAssembly.Memory | undefined {
  for (const ns of Object.values(imports ?? {}))
    for (const v of Object.values(ns)) if (v instanceof WebAssembly.Memory) return v
}

/** Wraps the 4-parameter exports (OrtCreateRunOptions is one) of each instance ORT creates from now on. */
export function installRunStop(): void {
  const wrapExports = (instance: WebAssembly.Instance, imports?: WebAssembly.Imports) => {
    const mem = memoryOf(imports)
    if (!mem) return instance
    const exports: WebAssembly.Exports = {}
    for (const [name, v] of Object.entries(instance.exports)) {
      // One-parameter exports: OrtReleaseRunOptions is one; the flag's window ends before it frees.
      if (typeof v === 'function' && v.length === 1) {
        const release = v as (x: number) => unknown
        exports[name] = (x: number) => {
          if (current !== 0 && x === current) endRunStop()
          return release(x)
        }
        continue
      }
      if (typeof v !== 'function' || v.length !== 4) {
        exports[name] = v
        continue
      }
      const fn = v as CreateRunOptions
      exports[name] = (...args: Parameters<CreateRunOptions>) => {
        const ret = fn(...args)
        if (args[1] === RUN_MARK && typeof args[2] === 'boolean') {
          try {
            caught(fn, args, ret, mem)
          } catch {
            flagAt = null // never let the hook fail a run
          }
        }
        return ret
      }
    }
    return { exports } as WebAssembly.Instance
  }
  const wrapResult = <T>(result: T, imports?: WebAssembly.Imports): T => {
    const r = result as { instance?: WebAssembly.Instance; module?: WebAssembly.Module }
    return r.instance && r.module ? ({ ...r, instance: wrapExports(r.instance, imports) } as T) : result
  }
  const { instantiate, instantiateStreaming } = WebAssembly
  WebAssembly.instantiate = (async (
    source: BufferSource | WebAssembly.Module,
    imports?: WebAssembly.Imports,
  ) => wrapResult(await instantiate(source as BufferSource, imports), imports)) as typeof instantiate
  WebAssembly.instantiateStreaming = async (source, imports) =>
    wrapResult(await instantiateStreaming(source, imports), imports)
}
