/**
 * 5. Engine: onnxruntime-web WASM at 1 and N threads, the contributor's 'auto' engine, and WebGPU
 * (SwiftShader here, small model only), each against onnxruntime-node on the same input. Browser
 * rounds and native rounds alternate in blocks, so load drift on a shared machine hits both.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import * as ort from 'onnxruntime-node'
import type { Page } from 'playwright-core'
import { settle } from './cpu.ts'
import { type InputSpec, seededInputs } from './inputs.ts'
import { eventsFromText, type OpProfile, opProfile } from './op-profile.ts'
import type { EngineRun, EngineSetting } from './page-engine.ts'
import { median } from './stats.ts'

export interface EngineModel {
  name: string
  /** Path under the built site. */
  file: string
  inputs: InputSpec[]
  /** Timed rounds for this model instead of the section's `runs`. */
  runs?: number
}

export interface EngineRow {
  model: string
  /** p50 run ms (worker-side) per setting: 'wasm-1', 'wasm-N', 'auto', 'webgpu'; native: 'node-1', 'node-N'. */
  p50: Record<string, number>
  firstMs: Record<string, number>
  /** The fixed setting 'auto' chose, over the best fixed setting, both measured side by side (target ≤ 1.05). */
  choiceVsBest: number
  /** 'auto's own runs over the best fixed setting: the same ratio plus run-to-run noise. */
  autoVsBest: number
  autoThreads?: number
  /** What 'auto' measured while calibrating: median ms per thread count over the judged pairs. */
  calibration?: Record<number, number>
  /** Each calibration 'auto' ran (first run, then each re-check): its choice, median N/1 ratio, pairs, wall ms. */
  calibrations?: {
    threads: number
    ratio: number
    pairs: number
    wallMs: number
    warmMs: number
    settled: boolean
    /** The timed pairs, [1-thread ms, N-thread ms], warm-up pair first. */
    timed: [number, number][]
  }[]
  /** best browser WASM / best native (each side at its own best thread count). */
  wasmVsNative: number
  /** Browser WASM / native at the same thread count: { 1: wasm-1 / node-1, N: wasm-N / node-N }. */
  wasmVsNativeByThreads: { 1: number; N: number }
  /** The best browser WASM setting / native at that same thread count. */
  wasmVsNativeSame: number
  /** Which browser setting was best ('wasm-1' or 'wasm-N'). */
  bestWasm: string
  /** Largest |browser − native| on the first output. */
  maxAbsDiffNative: number
  /** Largest |diff| between browser settings (0 = bitwise equal). */
  maxAbsDiffWeb: number
  eps: Record<string, string>
  /** ORT's profiler, 1 thread each side: ms per op type per run, browser WASM and native. */
  ops?: { web: OpProfile; native: OpProfile }
  /**
   * More runs of one setting back to back after the timed rounds (`after` runs in that worker by
   * then; a fixed setting only): under the JSEP build, ORT's 2-thread PP-OCR detection fell to 1-thread
   * speed after ~24 runs; this watches the plain build for the same (workers/ort-builds.ts).
   */
  sustained?: { label: string; after: number; runMs: number[]; p50Last10: number }
}

const BLOCKS = 3

async function nativeSessions(bytes: Uint8Array, m: EngineModel, threads: number[]) {
  const feeds = Object.fromEntries(
    Object.entries(seededInputs(m.inputs, 1)).map(([k, t]) => [k, new ort.Tensor('float32', t.data, t.dims)]),
  )
  const sessions = await Promise.all(
    threads.map((t) => ort.InferenceSession.create(bytes, { intraOpNumThreads: t, interOpNumThreads: 1 })),
  )
  const first = await sessions[0]!.run(feeds)
  const output = first[sessions[0]!.outputNames[0]!]!.data as Float32Array
  const times = threads.map(() => [] as number[])
  return {
    output,
    times,
    async rounds(n: number) {
      for (let r = 0; r < n; r++) {
        for (const [i, s] of sessions.entries()) {
          const t0 = performance.now()
          await s.run(feeds)
          times[i]!.push(performance.now() - t0)
        }
      }
    },
    release: () => Promise.all(sessions.map((s) => s.release())),
  }
}

/** onnxruntime-node with its profiler on (1 thread): ms per op type per run. */
async function nativeOpProfile(bytes: Uint8Array, m: EngineModel, runs: number): Promise<OpProfile> {
  const dir = mkdtempSync(join(tmpdir(), 'pc-ort-profile-'))
  let session: ort.InferenceSession | undefined
  try {
    session = await ort.InferenceSession.create(bytes, {
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      enableProfiling: true,
      profileFilePrefix: join(dir, 'ort'),
    })
    const feeds = Object.fromEntries(
      Object.entries(seededInputs(m.inputs, 1)).map(([k, t]) => [
        k,
        new ort.Tensor('float32', t.data, t.dims),
      ]),
    )
    for (let i = 0; i <= runs; i++) await session.run(feeds)
    session.endProfiling()
    const [file] = readdirSync(dir)
    if (!file) throw new Error('onnxruntime-node wrote no profile')
    return opProfile(eventsFromText(readFileSync(join(dir, file), 'utf8')))
  } finally {
    await session?.release().catch(() => {})
    rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * Opens the settings, times their first runs, then `runs` rounds. Each setting runs in a tab of its
 * own (`pages[i]`), as one contributor's engine does. In one tab, the workers shared V8's compiled
 * code and its tier-up: four ORT workers there made V8 burn ~25 s of CPU on background threads,
 * and 'auto' calibrated against that load and chose 1 thread for models 1.9x faster on 2. Rounds
 * alternate between the tabs, in rotating order.
 */
async function browser(
  pages: Page[],
  m: EngineModel,
  settings: EngineSetting[],
  runs: number,
  between?: (n: number) => Promise<void>,
  sustain?: { label: 'wasm-N'; runs: number },
  warmRuns = 0,
) {
  if (pages.length < settings.length) throw new Error(`${settings.length} settings need as many tabs`)
  const tabs = settings.map((setting, i) => ({ page: pages[i]!, setting }))
  let output: number[] | undefined
  const diffs: number[] = [] // each tab's first output against the first tab's (the reference)
  for (const { page, setting } of tabs) {
    await page.evaluate((a) => window.__bench.engineOpen(a), {
      url: `/${m.file}`,
      inputs: m.inputs,
      seed: 1,
      settings: [setting],
    })
    // 'auto' started warm: its first run is a contributor's first job, long after contributing began.
    if (setting.threads === 'auto') await settle()
    const first = await page.evaluate(() => window.__bench.engineFirst())
    output ??= first.output
    let diff = 0
    for (let i = 0; i < output.length; i++) diff = Math.max(diff, Math.abs(first.output[i]! - output[i]!))
    diffs.push(diff)
    // Each setting's worker compiles ORT's .wasm again (TurboFan, in the background, seconds of CPU):
    // time the runs after that, or the settings compete with compilers that finish at random times.
    await settle()
  }
  const backToBack = (t: (typeof tabs)[number], n: number) =>
    t.page.evaluate((a) => window.__bench.engineSustain(a.label, a.n), { label: t.setting.label, n })
  // Timed from a worker's steady state, as a contributor serving jobs has (and past 'auto's first re-check).
  if (warmRuns > 0) {
    for (const t of tabs) await backToBack(t, warmRuns)
    await settle()
  }
  const got: EngineRun[][] = tabs.map(() => [])
  for (let b = 0; b < BLOCKS; b++) {
    const n = Math.ceil(runs / BLOCKS)
    for (let k = 0; k < n; k++) {
      // One run in each tab per round, the order rotating, so no setting always follows the same one.
      const at = b * n + k
      for (let j = 0; j < tabs.length; j++) {
        const i = (at + j) % tabs.length
        got[i] = await tabs[i]!.page.evaluate(() => window.__bench.engineRounds(1))
      }
    }
    await between?.(n)
  }
  let sustained: EngineRow['sustained']
  const tab = tabs.find((t) => t.setting.label === sustain?.label)
  if (sustain && tab) {
    const after = 1 + warmRuns + BLOCKS * Math.ceil(runs / BLOCKS)
    const runMs = await backToBack(tab, sustain.runs)
    sustained = { label: sustain.label, after, runMs, p50Last10: median(runMs.slice(-10)) }
  }
  for (const t of tabs) await t.page.evaluate(() => window.__bench.engineClose())
  const all = got.flatMap((r, i) => r.map((x) => ({ ...x, maxAbsDiff: Math.max(x.maxAbsDiff, diffs[i]!) })))
  return { output: output!, runs: all, sustained }
}

export async function engineBench(
  pages: Page[],
  dist: string,
  models: EngineModel[],
  o: {
    runs: number
    webgpuModels: string[]
    webgpuRuns: number
    /** Models also run under ORT's profiler on both sides, and how many runs after a warm-up. */
    profileModels?: string[]
    profileRuns?: number
    /** Models whose N-thread setting then runs `sustainRuns` (30, at least 10) more times back to back. */
    sustainModels?: string[]
    sustainRuns?: number
    /** Untimed runs of every setting before the timed rounds (V8 tiers ORT's code up meanwhile). */
    warmRuns?: number
    log?: (s: string) => void
  },
): Promise<{ rows: EngineRow[]; maxThreads: number; swiftShaderAutoEp?: string }> {
  const rows: EngineRow[] = []
  let swiftShaderAutoEp: string | undefined
  const page = pages[0]
  if (!page) throw new Error('the engine section needs its tabs')
  const n = await page.evaluate(() => window.__bench.engineMaxThreads())
  for (const m of models) {
    o.log?.(`engine: ${m.name}`)
    const nat = await nativeSessions(readFileSync(resolve(dist, m.file)), m, [1, n])
    const settings: EngineSetting[] = [
      { label: 'wasm-1', threads: 1, ep: 'wasm' },
      { label: 'wasm-N', threads: n, ep: 'wasm' },
      { label: 'auto', threads: 'auto', ep: 'auto' },
    ]
    const sustain = o.sustainModels?.includes(m.name)
      ? { label: 'wasm-N' as const, runs: Math.max(10, o.sustainRuns ?? 30) }
      : undefined
    const web = await browser(pages, m, settings, m.runs ?? o.runs, (k) => nat.rounds(k), sustain, o.warmRuns)
    await nat.release()
    const p50: Record<string, number> = { 'node-1': median(nat.times[0]!), 'node-N': median(nat.times[1]!) }
    const firstMs: Record<string, number> = {}
    const eps: Record<string, string> = {}
    const note = (r: EngineRun) => {
      p50[r.label] = median(r.runMs)
      firstMs[r.label] = r.firstMs
      eps[r.label] = r.ep
    }
    web.runs.forEach(note)
    if (o.webgpuModels.includes(m.name)) {
      // A fallback adapter is present here: 'auto' must still pick WASM.
      const gpu = await browser(
        pages,
        m,
        [
          { label: 'webgpu', threads: 1, ep: 'webgpu' },
          { label: 'auto-ep', threads: 1, ep: 'auto' },
        ],
        o.webgpuRuns,
      )
      gpu.runs.forEach(note)
      swiftShaderAutoEp = gpu.runs[1]?.ep
    }
    let ops: EngineRow['ops']
    if (o.profileModels?.includes(m.name)) {
      await settle()
      const runs = o.profileRuns ?? 5
      const web = await page.evaluate((a) => window.__bench.engineOpProfile(a), {
        url: `/${m.file}`,
        inputs: m.inputs,
        seed: 1,
        runs,
      })
      ops = { web, native: await nativeOpProfile(readFileSync(resolve(dist, m.file)), m, runs) }
    }
    let diff = 0
    for (let i = 0; i < nat.output.length; i++)
      diff = Math.max(diff, Math.abs(nat.output[i]! - web.output[i]!))
    const best = Math.min(p50['wasm-1']!, p50['wasm-N']!)
    const bestWasm = p50['wasm-1']! <= p50['wasm-N']! ? 'wasm-1' : 'wasm-N'
    const byThreads = { 1: p50['wasm-1']! / p50['node-1']!, N: p50['wasm-N']! / p50['node-N']! }
    const autoRun = web.runs.find((r) => r.label === 'auto')
    const calibrated = autoRun?.chosen
    const chosen = calibrated?.threads
    rows.push({
      model: m.name,
      p50,
      firstMs,
      choiceVsBest: chosen ? p50[chosen === 1 ? 'wasm-1' : 'wasm-N']! / best : Number.NaN,
      autoVsBest: p50.auto! / best,
      ...(calibrated
        ? {
            autoThreads: calibrated.threads,
            calibration: calibrated.medianMs,
          }
        : {}),
      ...(autoRun?.calibrations
        ? {
            calibrations: autoRun.calibrations.map((c) => ({
              threads: c.threads,
              ratio: c.ratio,
              pairs: c.pairs,
              wallMs: c.wallMs,
              warmMs: c.warmMs,
              settled: c.settled,
              timed: c.timed.map((p): [number, number] => [+p.one.toFixed(2), +p.many.toFixed(2)]),
            })),
          }
        : {}),
      wasmVsNative: best / Math.min(p50['node-1']!, p50['node-N']!),
      wasmVsNativeByThreads: byThreads,
      wasmVsNativeSame: bestWasm === 'wasm-1' ? byThreads[1] : byThreads.N,
      bestWasm,
      maxAbsDiffNative: diff,
      maxAbsDiffWeb: Math.max(...web.runs.map((r) => r.maxAbsDiff)),
      eps,
      ...(ops ? { ops } : {}),
      ...(web.sustained ? { sustained: web.sustained } : {}),
    })
  }
  return { rows, maxThreads: n, ...(swiftShaderAutoEp ? { swiftShaderAutoEp } : {}) }
}
