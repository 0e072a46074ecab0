/** 1. Dispatch overhead: the same job in the requester's own worker (a) and on one remote contributor (b). */
import type { Page } from 'playwright-core'
import { type Dist, dist } from './stats.ts'

export interface DispatchRow {
  model: string
  /** Wall ms per job in the requester's own worker (a). */
  local: Dist
  /** Wall ms per `peer.submit` to one contributor over WebRTC (b), including the requester's bookkeeping. */
  remote: Dist
  /** The client's own round trip (sign → verified result), without the job record writes. */
  rtt: Dist
  localRun: Dist
  remoteRun: Dist
  /** Client RTT minus the contributor's own time from admitted job to outputs (receipt timing). */
  wire: Dist
  /** (b) submitted with `persist: false`: no IndexedDB writes on the requester. */
  unpersisted: Dist
  addedP50UnpersistedMs: number
  ratioP50: number
  ratioP95: number
  addedP50Ms: number
  /** Jobs that failed and were retried (their errors), if any. */
  failures?: string[]
}

export async function dispatchBench(
  req: Page,
  target: string,
  o: { models: string[]; n: number; warmup: number },
): Promise<DispatchRow[]> {
  const rows: DispatchRow[] = []
  for (const model of o.models) {
    const r = await req.evaluate((a) => window.__bench.dispatch(a), {
      model,
      target,
      n: o.n,
      warmup: o.warmup,
    })
    const local = dist(r.local)
    const remote = dist(r.remote)
    const unpersisted = dist(r.unpersisted)
    rows.push({
      model,
      local,
      remote,
      rtt: dist(r.remoteRtt),
      localRun: dist(r.localRun),
      remoteRun: dist(r.remoteRun),
      wire: dist(r.remoteRtt.map((x, i) => x - (r.remoteExec[i] ?? 0))),
      ratioP50: remote.p50 / local.p50,
      ratioP95: remote.p95 / local.p95,
      addedP50Ms: remote.p50 - local.p50,
      unpersisted,
      addedP50UnpersistedMs: unpersisted.p50 - local.p50,
      ...(r.failures.length ? { failures: r.failures } : {}),
    })
  }
  return rows
}
