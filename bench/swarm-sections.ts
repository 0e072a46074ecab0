/** Sections 1–3 (and 6 when it lands) on one swarm: a requester bench tab plus 1-thread contributor tabs. */
import type { Page } from 'playwright-core'
import { launchProfileTab } from '../test/helpers/chromium.ts'
import { peerId, startSwarm, waitForContributors, waitReady } from '../test/helpers/swarm.ts'
import { idleCpu } from './cpu.ts'
import { dispatchBench } from './dispatch.ts'
import { modelTransferBench } from './model-transfer.ts'
import type { Results } from './report.ts'
import { median } from './stats.ts'
import { throughputBench, warmTabs } from './throughput.ts'
import { transportBench } from './transport.ts'
import { verificationBench } from './verification.ts'

type Tallies = Record<string, { n: number; bytes: number; ms: number }>
const perJob = (t: Tallies, n: number) =>
  Object.fromEntries(
    Object.entries(t).map(([k, v]) => [k, { n: v.n / n, kib: v.bytes / n / 1024, ms: v.ms / n }]),
  )

interface Ctx {
  /** The built site (model files for the native reference). */
  dist: string
  quick: boolean
  want(s: string): boolean
  log(s: string): void
  section<T>(name: string, f: () => Promise<T>): Promise<T | undefined>
}

export async function swarmSections(results: Results, { dist, quick, want, section }: Ctx): Promise<void> {
  const swarm = await startSwarm({ tabs: 0 })
  try {
    const req = await swarm.openTab('bench/page.html')
    const ctrs: Page[] = []
    for (let i = 0; i < 3; i++) ctrs.push(await swarm.openTab('bench/page.html?contribute=1&threads=1'))
    const ids = await Promise.all(ctrs.map(peerId))
    await waitForContributors(req, ids)
    // Let duplicate dials between the tabs settle: a link replaced mid-job fails that job.
    await req.waitForTimeout(3000)
    const [c0, id0] = [ctrs[0]!, ids[0]!]
    // Steady state first: every tab runs the model once, then V8's background compile must finish.
    results.warmUp = await section('warm-up', () => warmTabs(req, ids, 'bench-100ms'))
    results.idle = await section('idle swarm', () => idleCpu(quick ? 3000 : 10_000))

    if (want('dispatch')) {
      // ~1 / 10 / 100 ms of compute with 16 KiB in and out; then 128 KiB to 3.5 MiB of tensors.
      const models = quick
        ? ['bench-1ms', 'bench-10ms', 'mlp-m']
        : ['bench-1ms', 'bench-10ms', 'bench-100ms', 'mlp-s', 'mlp-m', 'mlp-l']
      results.dispatch = await section('dispatch', () =>
        dispatchBench(req, id0, { models, n: quick ? 10 : 40, warmup: 3 }),
      )
      results.profile = await section('job protocol profile', async () => {
        const out: Record<string, Record<string, number>> = {}
        for (const model of ['mlp-tiny', ...models]) {
          const t = await req.evaluate((a) => window.__bench.profile(a), { model, n: quick ? 5 : 15 })
          out[model] = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, median(v)]))
        }
        return out
      })
      results.probes = await section('job probes', async () => {
        const out: NonNullable<Results['probes']> = {}
        for (const model of models.filter((m) => ['bench-10ms', 'mlp-m'].includes(m))) {
          const n = quick ? 5 : 20
          await c0.evaluate(() => window.__bench.probes.reset())
          const r = await req.evaluate((a) => window.__bench.probe(a), { model, target: id0, n })
          const c = await c0.evaluate(() => window.__bench.probes.read())
          out[model] = { requester: perJob(r.tallies, r.jobs), contributor: perJob(c, r.jobs) }
        }
        return out
      })
    }
    if (want('transport')) {
      results.transport = await section('transport', () =>
        transportBench(req, c0, id0, {
          mib: quick ? 8 : 32,
          reps: quick ? 1 : 7, // 3 left single slow samples deciding the median on a busy machine
          sizesKiB: [16, 64, 256],
          echoes: quick ? 30 : 100,
        }),
      )
      results.modelTransfer = await section('model transfer', () => modelTransferBench(req, ctrs, ids, quick))
    }
    if (want('throughput')) {
      // A requester of its own, in a Chromium with an on-disk profile as a person's browser has.
      // Fresh: after the sections above, the first one's IndexedDB holds ~200 MB of outputs and
      // models. On disk: in the swarm's off-the-record contexts IndexedDB is in memory, and there the
      // browser process's CPU per job grew 5 → 19 ms over 300 bench-100ms jobs (5 → 8 ms on disk).
      results.throughput = await section('throughput', async () => {
        const own = await launchProfileTab()
        try {
          const fresh = own.page
          await fresh.goto(`${swarm.web.url}bench/page.html`)
          await waitReady(fresh)
          await waitForContributors(fresh, ids)
          await fresh.waitForTimeout(3000)
          return await throughputBench(fresh, ctrs, ids, {
            // compute-bound with 16 KiB of I/O first (the target's row), then 128 KiB and 3.5 MiB per job
            models: quick ? ['bench-100ms'] : ['bench-100ms', 'bench-deep', 'mlp-l'],
            perContributor: quick ? 4 : 24, // long enough that the batch's start and tail weigh little
            counts: quick ? [1, 2] : [1, 2, 3],
            dist,
            nativeRuns: quick ? 30 : 60,
            // The target's row swings ±0.1× between single batches here: 3 interleaved rounds.
            ...(quick ? {} : { rounds: { 'bench-100ms': 3 } }),
            // What the requester's IndexedDB writes cost: the same batches with `persist: false`.
            unpersisted: { 'bench-100ms': [1, 2] },
          })
        } finally {
          await own.close()
        }
      })
    }
    if (want('verification'))
      results.verification = await section('verification', () => verificationBench(req, 'mlp-m', quick))
  } finally {
    await swarm.stop()
  }
}
