/**
 * Bench page, engine: one model on onnxruntime-web with fixed settings (WASM 1 / N threads, WebGPU)
 * and with the contributor's 'auto' engine, runs interleaved so load noise hits every setting alike.
 */
import { wrap } from 'comlink'
import { createInferenceBridge, type InferenceEngine } from '../src/compute/bridge.ts'
import { type Calibrated, createEngine, maxThreads } from '../src/compute/engine.ts'
import { modelCid } from '../src/shared/cid.ts'
import type { TensorData } from '../src/shared/tensor.ts'
import { calibrationStore } from '../src/store/calibration.ts'
import { openStore } from '../src/store/db.ts'
import { type InputSpec, seededInputs } from './inputs.ts'
import type { OpProfileApi } from './op-profile.worker.ts'

export interface EngineSetting {
  label: string
  /** A fixed WASM thread count, or 'auto' (the contributor's calibrating engine). */
  threads: number | 'auto'
  ep: 'wasm' | 'webgpu' | 'auto'
}

export interface EngineRun {
  label: string
  ep: string
  /** Wall ms of the first run: session creation (and calibration, for 'auto'). */
  firstMs: number
  runMs: number[]
  /** Largest |diff| of the first output against the first setting's (0 = bitwise equal). */
  maxAbsDiff: number
  /** For 'auto': the thread count it chose and the medians it measured. */
  chosen?: { threads: number; medianMs: Record<number, number> }
  /** For 'auto': every calibration so far (the first run's, then each re-check's). */
  calibrations?: Omit<Calibrated, 'cid'>[]
}

const store = openStore('peer-compute-bench-engine')

interface Open {
  cid: string
  inputs: ReturnType<typeof seededInputs>
  settings: EngineSetting[]
  engines: InferenceEngine[]
  runs: EngineRun[]
  calibrations: Omit<Calibrated, 'cid'>[]
}
let open: Open | undefined

/**
 * Creates one engine per setting and loads the model; nothing runs yet. 'auto' starts warm and
 * waits for it, as a contributor's engine does when contributing starts, long before its first job.
 */
export async function engineOpen(o: {
  url: string
  inputs: InputSpec[]
  seed: number
  settings: EngineSetting[]
}) {
  engineClose()
  const bytes = new Uint8Array(await (await fetch(o.url)).arrayBuffer())
  const cid = (await modelCid(bytes)).toString()
  const calibration = calibrationStore(await store)
  const calibrations: Omit<Calibrated, 'cid'>[] = []
  const onCalibrated = ({ cid: _, ...c }: Calibrated) => void calibrations.push(c)
  const engines: InferenceEngine[] = o.settings.map((s) =>
    s.threads === 'auto'
      ? createEngine({
          threads: 'auto',
          allowWebGpu: false,
          warm: true,
          calibration,
          idleTimeoutMs: 0,
          onCalibrated,
        })
      : createInferenceBridge({
          init: { numThreads: s.threads, allowWebGpu: s.ep !== 'wasm' },
          idleTimeoutMs: 0,
        }),
  )
  const inputs = seededInputs(o.inputs, o.seed)
  open = { cid, inputs, settings: o.settings, engines, runs: [], calibrations }
  for (const [i, s] of o.settings.entries()) {
    if (s.threads === 'auto') await engines[i]!.warm?.()
    await engines[i]!.loadModel(cid, bytes)
  }
}

/** The N of 'wasm-N': the thread count this page's engines default to (src/shared/threads.ts). */
export const engineMaxThreads = (): number => maxThreads()

/** Times each setting's first run (session creation, and calibration for 'auto'); returns the first output. */
export async function engineFirst() {
  const o = open!
  let reference: TensorData | undefined
  for (const [i, s] of o.settings.entries()) {
    const t0 = performance.now()
    const r = await o.engines[i]!.run({ cid: o.cid, inputs: o.inputs, ep: s.ep })
    const out = Object.values(r.outputs)[0]!.data
    reference ??= out
    let diff = 0
    for (let k = 0; k < out.length; k++)
      diff = Math.max(diff, Math.abs(Number(out[k]) - Number(reference[k])))
    o.runs.push({ label: s.label, ep: r.ep, firstMs: performance.now() - t0, runMs: [], maxAbsDiff: diff })
  }
  await noteChoice(o)
  return { output: Array.from(reference as Float32Array) }
}

/**
 * A pause before each timed run: a multi-threaded run's pool threads spin on after it, and a run of
 * another setting started at once shared the cores with them (mlp-m on 2 threads: 9.2–10.3 ms so,
 * 7.6 ms apart). A contributor's next job runs on the same pool, which that spinning does not slow.
 */
const GAP_MS = 30

/**
 * `n` more rounds, every setting once per round, so load drift hits all settings alike. The order
 * rotates each round, so no setting always runs right after the same one.
 */
export async function engineRounds(n: number): Promise<EngineRun[]> {
  const o = open!
  const count = o.settings.length
  for (let k = 0; k < n; k++) {
    const first = o.runs[0]!.runMs.length % count
    for (let j = 0; j < count; j++) {
      const i = (first + j) % count
      await new Promise((r) => setTimeout(r, GAP_MS))
      const r = await o.engines[i]!.run({ cid: o.cid, inputs: o.inputs, ep: o.settings[i]!.ep })
      o.runs[i]!.runMs.push(r.timing.runMs)
    }
  }
  await noteChoice(o) // the re-check may have changed it
  return o.runs
}

async function noteChoice(o: Open): Promise<void> {
  const rec = await calibrationStore(await store).get(o.cid)
  for (const [i, s] of o.settings.entries()) {
    if (s.threads !== 'auto') continue
    if (rec) o.runs[i]!.chosen = { threads: rec.threads, medianMs: rec.medianMs }
    o.runs[i]!.calibrations = o.calibrations
  }
}

/** `n` runs of one setting back to back, as a contributor's jobs come (untimed warm-up, or sustained runs): ms of each. */
export async function engineSustain(label: string, n: number): Promise<number[]> {
  const o = open!
  const i = o.settings.findIndex((s) => s.label === label)
  if (i < 0) throw new Error(`no setting ${label}`)
  const out: number[] = []
  for (let k = 0; k < n; k++)
    out.push((await o.engines[i]!.run({ cid: o.cid, inputs: o.inputs, ep: o.settings[i]!.ep })).timing.runMs)
  return out
}

export function engineClose(): void {
  for (const e of open?.engines ?? []) e.close()
  open = undefined
}

/** ORT's profiler on one model, WASM 1 thread, in a worker of its own (bench/op-profile.worker.ts). */
export async function engineOpProfile(o: { url: string; inputs: InputSpec[]; seed: number; runs: number }) {
  const bytes = new Uint8Array(await (await fetch(o.url)).arrayBuffer())
  const feeds = seededInputs(o.inputs, o.seed)
  const worker = new Worker(new URL('./op-profile.worker.ts', import.meta.url), {
    type: 'module',
    name: 'inference',
  })
  try {
    return await wrap<OpProfileApi>(worker).profile(bytes, feeds, o.runs)
  } finally {
    worker.terminate()
  }
}
