/**
 * 6. Verification cost: compute and wall time per verified result under replication r = 1, 2, 3
 * (quorum = r) and the adaptive policy (2 replicas until a peer has a streak of valid results, then
 * one plus spot checks). Three jobs in flight, so adaptive decisions see earlier results.
 */
import type { Page } from 'playwright-core'
import type { VerificationPolicy } from '../src/trust/policy.ts'
import { median } from './stats.ts'

export interface VerificationRow {
  policy: string
  jobs: number
  /** Replicas dispatched per verified result, over the batch and over its second half. */
  replicas: number
  replicasLastHalf: number
  /** replicas × the median run ms over all policies: compute spent per verified result. */
  computeMsPerResult: number
  wallMsPerResult: number
  /** compute per result over r=1's. */
  costVsR1: number
}

const POLICIES: [string, Partial<VerificationPolicy>][] = [
  ['adaptive (2 → 1 + spot checks)', { redundancy: 2, quorum: 2, adaptive: true }],
  ['r=1', { redundancy: 1, quorum: 1, adaptive: false }],
  ['r=2', { redundancy: 2, quorum: 2, adaptive: false }],
  ['r=3', { redundancy: 3, quorum: 3, adaptive: false }],
]

export async function verificationBench(req: Page, model: string, quick: boolean) {
  const rows: VerificationRow[] = []
  const runs: number[] = []
  for (const [name, policy] of POLICIES) {
    const jobs = name.startsWith('adaptive') ? (quick ? 6 : 60) : quick ? 3 : 24
    const r = await req.evaluate((a) => window.__bench.batch(a), { model, n: jobs, policy, concurrency: 3 })
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length
    const replicas = mean(r.attempts)
    runs.push(...r.runMs)
    rows.push({
      policy: name,
      jobs,
      replicas,
      replicasLastHalf: mean(r.attempts.slice(jobs >> 1)),
      computeMsPerResult: replicas,
      wallMsPerResult: r.ms / jobs,
      costVsR1: Number.NaN,
    })
  }
  // One run time for all policies, so load drift between batches does not pass for cost.
  const run = median(runs)
  const r1 = rows.find((x) => x.policy === 'r=1')!.replicas
  for (const x of rows) {
    x.computeMsPerResult = x.replicas * run
    x.costVsR1 = x.replicas / r1
  }
  return { status: 'measured', model, rows }
}
