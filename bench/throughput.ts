/** 2. Throughput scaling: a batch of compute-bound jobs on 1, 2 and 3 contributor tabs (1-thread WASM each). */
import type { Page } from 'playwright-core'
import { PROFILE_DIR_PREFIX } from '../test/helpers/chromium.ts'
import { type Settled, sample, settle, since, threadSample, threadsSince } from './cpu.ts'
import { type NativeScaling, nativeScaling } from './native-scaling.ts'
import { median } from './stats.ts'
import { connectRaw } from './transport.ts'

export interface ThroughputRow {
  model: string
  contributors: number
  jobs: number
  jobsPerS: number
  /** jobs/s over the 1-contributor figure. */
  speedup: number
  /** speedup / contributors. */
  efficiency: number
  byWorker: number[]
  /** Inference ms per job (worker-side), and every process's CPU ms per job by kind (/proc). */
  computeMsPerJob: number
  cpuMsPerJob: Record<string, number>
  /** The same by thread, `[requester ]<kind>/<thread>`: which threads the non-compute CPU went to. */
  cpuMsPerJobByThread: Record<string, number>
  /** Our processes' CPU time over the batch's wall time: 2 = both cores of this machine. */
  coresBusy: number
  /** Jobs that failed and were run again (their errors), if any. */
  failures?: string[]
  /** Per round, when the counts ran in several interleaved rounds: jobs/s and the paired speedup. */
  rounds?: { jobsPerS: number[]; speedup: number[] }
  /** Submitted with `persist: false` (no IndexedDB writes); its speedup is over the same kind of 1-contributor batch. */
  persist?: false
}

export interface Throughput {
  rows: ThroughputRow[]
  localJobsPerS: Record<string, number>
  /** Per model, after its first run on every tab: how long until the tabs were quiet again. */
  settled: Record<string, Settled>
  /** Per model: k onnxruntime-node processes (1 thread each) at once, for the same counts. */
  native: Record<string, NativeScaling>
  /** The first model's batches over raw data channels, no job protocol: what Chromium's WebRTC and ORT-web allow. */
  raw?: RawScaling
  /** mlp-tiny on all contributors: what the job path alone sustains, and its CPU per job. */
  ceiling: { jobsPerS: number; cpuMsPerJob: Record<string, number>; coresBusy: number }
}

async function setContributors(req: Page, ctrs: Page[], ids: string[], k: number): Promise<void> {
  await Promise.all(ctrs.map((c, i) => c.evaluate((on) => window.__peer.setContributing(on), i < k)))
  await req.waitForFunction(
    (want) =>
      window.__peer
        .peers()
        .filter((p) => p.direct && p.advert.contributing && p.advert.slots > 0)
        .map((p) => p.id)
        .sort()
        .join() === want,
    ids.slice(0, k).sort().join(),
    { timeout: 20_000, polling: 50 },
  )
}

/**
 * Runs `model` once in the requester's own worker and on every contributor (model fetched, session
 * created), then waits for the tabs to go quiet (`settle`): later figures time steady state.
 */
export async function warmTabs(req: Page, ids: string[], model: string): Promise<Settled> {
  await req.evaluate(
    ({ model, ids }) =>
      Promise.all([
        window.__bench.localBatch({ model, n: 1 }),
        ...ids.map((peer) => window.__peer.submit(model, window.__bench.inputs(model), { peer })),
      ]),
    { model, ids },
  )
  return settle()
}

export async function throughputBench(
  req: Page,
  ctrs: Page[],
  ids: string[],
  o: {
    models: string[]
    perContributor: number
    counts: number[]
    dist: string
    nativeRuns: number
    /** Interleaved rounds of all counts per model (default 1): each round's speedup is paired. */
    rounds?: Record<string, number>
    /** Per model, counts that also run with `persist: false`, in the same rounds. */
    unpersisted?: Record<string, number[]>
  },
): Promise<Throughput> {
  const rows: ThroughputRow[] = []
  const localJobsPerS: Record<string, number> = {}
  const settled: Record<string, Settled> = {}
  const native: Record<string, NativeScaling> = {}
  for (const model of o.models) {
    await setContributors(req, ctrs, ids, ctrs.length)
    settled[model] = await warmTabs(req, ids, model)
    const local = await req.evaluate((a) => window.__bench.localBatch(a), { model, n: o.perContributor })
    localJobsPerS[model] = (o.perContributor / local.ms) * 1000
    // The counts, then those that also run with `persist: false`; each set's speedups over its own 1.
    const sets = [
      { persist: true, counts: o.counts },
      { persist: false, counts: o.unpersisted?.[model] ?? [] },
    ].map((s) => ({ ...s, runs: new Map<number, Batch[]>(s.counts.map((k) => [k, []])) }))
    for (let round = 0; round < (o.rounds?.[model] ?? 1); round++) {
      for (const s of sets) {
        for (const k of s.counts) {
          await setContributors(req, ctrs, ids, k)
          s.runs.get(k)!.push(await batch(req, model, o.perContributor * k, s.persist))
        }
      }
    }
    for (const s of sets) {
      const base = s.runs.get(1)?.map((b) => b.jobsPerS)
      for (const k of s.counts)
        rows.push({
          ...row(model, k, s.runs.get(k)!, base),
          ...(s.persist ? {} : { persist: false as const }),
        })
    }
  }
  // The same counts as onnxruntime-node processes, the tabs idle meanwhile: what the cores allow.
  await settle()
  for (const model of o.models) native[model] = await nativeScaling(o.dist, model, o.counts, o.nativeRuns)
  const first = o.models[0]!
  const raw = await rawScaling(req, ctrs, first, o.counts, o.perContributor, o.rounds?.[first] ?? 1)
  await setContributors(req, ctrs, ids, ctrs.length)
  // The job path's own ceiling: near-zero compute (mlp-tiny) on every contributor.
  const n = o.perContributor * 4
  const cpu0 = sample()
  const t = await req.evaluate((a) => window.__bench.batch(a), { model: 'mlp-tiny', n })
  const cpu = since(cpu0)
  const ceiling = {
    jobsPerS: (n / t.ms) * 1000,
    cpuMsPerJob: perJob([cpu], n),
    coresBusy: Object.values(cpu).reduce((a, b) => a + b, 0) / t.ms,
  }
  return { rows, localJobsPerS, settled, native, ceiling, raw }
}

interface Batch {
  jobs: number
  ms: number
  jobsPerS: number
  byWorker: Record<string, number>
  runMs: number[]
  failures: string[]
  cpu: Record<string, number>
  threads: Record<string, number>
}

/** Threads of the requester's own browser (launchProfileTab) are labelled 'requester'. */
const threadsNow = () => threadSample({ marker: PROFILE_DIR_PREFIX, role: 'requester' })

type BatchRun = Pick<Batch, 'ms' | 'byWorker' | 'runMs' | 'failures'>

const batch = (req: Page, model: string, jobs: number, persist = true) =>
  measured(jobs, () => req.evaluate((a) => window.__bench.batch(a), { model, n: jobs, persist }))

/** `run` (a batch of `jobs`) with every process's and thread's CPU over it. */
async function measured(jobs: number, run: () => Promise<BatchRun>): Promise<Batch> {
  const cpu0 = sample()
  const threads0 = threadsNow()
  const r = await run()
  return {
    jobs,
    ...r,
    jobsPerS: (jobs / r.ms) * 1000,
    cpu: since(cpu0),
    threads: threadsSince(threads0, threadsNow()),
  }
}

const perJob = (totals: Batch['cpu'][], jobs: number) => {
  const out: Record<string, number> = {}
  for (const t of totals) for (const [k, v] of Object.entries(t)) out[k] = (out[k] ?? 0) + v / jobs
  return out
}

/** One row from a count's rounds: median jobs/s, median of the speedups paired round by round. */
function row(model: string, k: number, bs: Batch[], base: number[] | undefined): ThroughputRow {
  const jobs = bs.reduce((n, b) => n + b.jobs, 0)
  const ms = bs.reduce((n, b) => n + b.ms, 0)
  const cpuMsPerJob = perJob(
    bs.map((b) => b.cpu),
    jobs,
  )
  const byWorker = new Map<string, number>()
  for (const b of bs)
    for (const [w, n] of Object.entries(b.byWorker)) byWorker.set(w, (byWorker.get(w) ?? 0) + n)
  const perRound = bs.map((b, i) => (base?.[i] ? b.jobsPerS / base[i] : Number.NaN))
  const speedup = median(perRound)
  const failures = bs.flatMap((b) => b.failures)
  const runMs = bs.flatMap((b) => b.runMs)
  return {
    model,
    contributors: k,
    jobs,
    jobsPerS: median(bs.map((b) => b.jobsPerS)),
    speedup,
    efficiency: speedup / k,
    byWorker: [...byWorker.values()],
    // NaN where the batches report no run times (raw channels).
    computeMsPerJob: runMs.length ? runMs.reduce((a, b) => a + b, 0) / jobs : Number.NaN,
    cpuMsPerJob,
    cpuMsPerJobByThread: perJob(
      bs.map((b) => b.threads),
      jobs,
    ),
    coresBusy: (Object.values(cpuMsPerJob).reduce((a, b) => a + b, 0) * jobs) / ms,
    ...(failures.length ? { failures } : {}),
    ...(bs.length > 1 ? { rounds: { jobsPerS: bs.map((b) => b.jobsPerS), speedup: perRound } } : {}),
  }
}

export interface RawScaling {
  model: string
  /** As the swarm's rows; byWorker counts jobs per contributor's channel, computeMsPerJob is NaN. */
  rows: ThroughputRow[]
}

/** Jobs outstanding per raw channel: as many as a swarm contributor's slots (2 by default). */
const RAW_DEPTH = 2

/**
 * `model`'s batches on 1…k contributor tabs over raw RTCDataChannels (bench/page-rawjobs.ts): the
 * input's bytes out, the output's back, 1-thread WASM in each tab's own worker, in interleaved rounds.
 */
async function rawScaling(
  req: Page,
  ctrs: Page[],
  model: string,
  counts: number[],
  perContributor: number,
  rounds: number,
): Promise<RawScaling> {
  const channels = ctrs.map((_, i) => `j${i}`)
  try {
    for (const [i, c] of ctrs.entries()) {
      await connectRaw(req, channels[i]!, (offer) =>
        c.evaluate((a) => window.__bench.rawJobsAnswer(a), { id: 'j', offer, model }),
      )
    }
    // Every contributor's worker loads the model and runs it once, then the tabs go quiet.
    await req.evaluate((a) => window.__bench.rawJobBatch(a), {
      model,
      channels,
      n: channels.length,
      depth: 1,
    })
    await settle()
    const runs = new Map(counts.map((k) => [k, [] as Batch[]]))
    for (let r = 0; r < rounds; r++) {
      for (const k of counts) {
        const n = perContributor * k
        const some = channels.slice(0, k)
        runs.get(k)!.push(
          await measured(n, async () => {
            const b = await req.evaluate((a) => window.__bench.rawJobBatch(a), {
              model,
              channels: some,
              n,
              depth: RAW_DEPTH,
            })
            const byWorker = Object.fromEntries(some.map((id, i) => [id, b.byChannel[i] ?? 0]))
            return { ms: b.ms, byWorker, runMs: [], failures: [] }
          }),
        )
      }
    }
    const base = runs.get(1)?.map((b) => b.jobsPerS)
    const rows = counts.map((k) => row(model, k, runs.get(k)!, base))
    return { model, rows }
  } finally {
    for (const c of ctrs) await c.evaluate(() => window.__bench.rawClose('j'))
    await req.evaluate((ids) => ids.forEach(window.__bench.rawClose), channels)
  }
}
