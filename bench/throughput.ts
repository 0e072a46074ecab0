/** 2. Throughput scaling: a batch of compute-bound jobs on 1, 2 and 3 contributor tabs (1-thread WASM each). */
import type { Page } from 'playwright-core'
import { type Settled, sample, settle, since } from './cpu.ts'
import { type NativeScaling, nativeScaling } from './native-scaling.ts'

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
  /** Our processes' CPU time over the batch's wall time: 2 = both cores of this machine. */
  coresBusy: number
  /** Jobs that failed and were run again (their errors), if any. */
  failures?: string[]
}

export interface Throughput {
  rows: ThroughputRow[]
  localJobsPerS: Record<string, number>
  /** Per model, after its first run on every tab: how long until the tabs were quiet again. */
  settled: Record<string, Settled>
  /** Per model: k onnxruntime-node processes (1 thread each) at once, for the same counts. */
  native: Record<string, NativeScaling>
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
  o: { models: string[]; perContributor: number; counts: number[]; dist: string; nativeRuns: number },
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
    let base = 0
    for (const k of o.counts) {
      await setContributors(req, ctrs, ids, k)
      const jobs = o.perContributor * k
      const cpu0 = sample()
      const r = await req.evaluate((a) => window.__bench.batch(a), { model, n: jobs })
      const cpu = since(cpu0)
      const jobsPerS = (jobs / r.ms) * 1000
      const cpuMs = Object.values(cpu).reduce((a, b) => a + b, 0)
      if (k === 1) base = jobsPerS
      const speedup = base ? jobsPerS / base : Number.NaN
      rows.push({
        model,
        contributors: k,
        jobs,
        jobsPerS,
        speedup,
        efficiency: speedup / k,
        byWorker: Object.values(r.byWorker),
        computeMsPerJob: r.runMs.reduce((a, b) => a + b, 0) / jobs,
        cpuMsPerJob: Object.fromEntries(Object.entries(cpu).map(([kind, ms]) => [kind, ms / jobs])),
        coresBusy: cpuMs / r.ms,
        ...(r.failures.length ? { failures: r.failures } : {}),
      })
    }
  }
  // The same counts as onnxruntime-node processes, the tabs idle meanwhile: what the cores allow.
  await settle()
  for (const model of o.models) native[model] = await nativeScaling(o.dist, model, o.counts, o.nativeRuns)
  await setContributors(req, ctrs, ids, ctrs.length)
  // The job path's own ceiling: near-zero compute (mlp-tiny) on every contributor.
  const n = o.perContributor * 4
  const cpu0 = sample()
  const t = await req.evaluate((a) => window.__bench.batch(a), { model: 'mlp-tiny', n })
  const cpu = since(cpu0)
  const ceiling = {
    jobsPerS: (n / t.ms) * 1000,
    cpuMsPerJob: Object.fromEntries(Object.entries(cpu).map(([kind, ms]) => [kind, ms / n])),
    coresBusy: Object.values(cpu).reduce((a, b) => a + b, 0) / t.ms,
  }
  return { rows, localJobsPerS, settled, native, ceiling }
}
