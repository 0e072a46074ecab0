/**
 * A dispute between real tabs: two contributors disagree on a job, one of them a liar whose trace
 * agrees with its wrong result. The requester settles it by bisection over
 * `/peer-compute/dispute/2.0.0` and its own referee run: the liar is marked invalid, and since the
 * honest side's worker is a stranger, a third replica must agree with it before the job is verified.
 * The quorum record carries the dispute, checked offline with and without the model.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import catalog from '../../public/models/catalog.json' with { type: 'json' }
import { disputePlan } from '../../src/dispute/commit.ts'
import { verifyQuorumRecord } from '../../src/trust/quorum-record.ts'
import { ortRun } from '../helpers/ort-run.ts'
import { peerId, type Swarm, startSwarm, waitForContributors } from '../helpers/swarm.ts'

const tiny = catalog.find((e) => e.name === 'mlp-tiny')!

// Twice: contributors trace on demand when asked to commit, or ran the job as its trace (traceJobs).
describe.each([false, true])('a dispute between tabs (traceJobs: %s)', (traceJobs) => {
  let swarm: Swarm
  let requester: Page
  let honest: string
  let liar: string
  let third: Page
  let thirdId: string
  beforeAll(async () => {
    swarm = await startSwarm({ tabs: 0, testHooks: true })
    requester = await swarm.openTab()
    const h = await swarm.openTab()
    const l = await swarm.openTab('', { testHooks: { adversary: 'always-wrong', disputeLie: true } })
    for (const t of [h, l]) await t.evaluate(() => window.__peer.setContributing(true))
    ;[honest, liar] = await Promise.all([peerId(h), peerId(l)])
    await waitForContributors(requester, [honest, liar])
    // Contributes only once the first two replicas are out, so the dispute is between those two.
    third = await swarm.openTab()
    thirdId = await peerId(third)
  }, 90_000)
  afterAll(() => swarm?.stop())

  it('finds the lie by bisection, marks the liar, and has a third replica agree with the honest result', async () => {
    await requester.evaluate(
      ({ cid, traceJobs }) => {
        const x = { x: { dtype: 'float32' as const, dims: [1, 16], data: new Float32Array(16).fill(0.25) } }
        const w = window as unknown as { __t0: number; __out: Promise<unknown> }
        w.__t0 = performance.now()
        w.__out = window.__peer.submit(cid, x, {
          policy: { redundancy: 2, quorum: 2, adaptive: false, traceJobs },
        })
      },
      { cid: tiny.cid, traceJobs },
    )
    await expect
      .poll(() => requester.evaluate(async () => (await window.__peer.jobs(1))[0]?.replicas?.length ?? 0), {
        interval: 50,
      })
      .toBeGreaterThanOrEqual(2)
    await third.evaluate(() => window.__peer.setContributing(true))
    const r = await requester.evaluate(async () => {
      const w = window as unknown as { __t0: number; __out: ReturnType<typeof window.__peer.submit> }
      const out = await w.__out
      const job = await window.__peer.job(out.id)
      return {
        ms: performance.now() - w.__t0,
        workers: out.workers,
        risk: out.risk,
        replicas: job?.replicas,
        record: Array.from(out.record),
        reputation: window.__peer.reputation.all(),
      }
    })
    console.log(`dispute settled and verified in ${r.ms.toFixed(0)} ms, ${r.replicas?.length} replicas sent`)
    expect(r.workers).toEqual([honest, thirdId])
    expect(r.replicas).toHaveLength(3)
    const [first, second] = r.replicas!
    expect([first!.peer, second!.peer].sort()).toEqual([honest, liar].sort())
    expect(r.replicas!.find((x) => x.peer === liar)).toMatchObject({ status: 'ok', convicted: true })
    expect(r.replicas!.find((x) => x.peer === honest)?.convicted).toBeUndefined()
    expect(r.replicas![2]).toMatchObject({ peer: thirdId, status: 'ok' })
    expect(r.reputation.find((p) => p.peer === liar)).toMatchObject({ invalid: 1 })
    expect(r.reputation.find((p) => p.peer === honest)).toMatchObject({ invalid: 0, valid: 1 })
    expect(r.reputation.find((p) => p.peer === thirdId)).toMatchObject({ invalid: 0, valid: 1 })
    expect(r.risk).toBeCloseTo(0.01, 6) // two fresh workers agreeing, not the winner alone (0.1)

    const record = Uint8Array.from(r.record)
    const blind = await verifyQuorumRecord(record, 2)
    expect(blind.workers).toEqual([honest, thirdId])
    expect(blind.dispute).toMatchObject({ other: liar, checked: 'commitments' })
    const model = new Uint8Array(
      readFileSync(resolve(import.meta.dirname, '../../public/models/mlp-tiny.onnx')),
    )
    const full = await verifyQuorumRecord(record, 1, {
      plan: disputePlan(model),
      run: (m, i) => ortRun(m, i),
    })
    expect(full.dispute).toMatchObject({ other: liar, checked: 'record', proven: true })
    expect(['a-invalid', 'b-invalid']).toContain(full.dispute!.verdict)

    const tampered = record.slice()
    tampered[tampered.length - 40]! ^= 1
    await expect(verifyQuorumRecord(tampered, 1, { plan: disputePlan(model) })).rejects.toThrow()
  }, 120_000)
})
