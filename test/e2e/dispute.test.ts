/**
 * A dispute between real tabs: two contributors disagree on a job, one of them a liar whose trace
 * agrees with its wrong result. The requester settles it by bisection over
 * `/peer-compute/dispute/1.0.0` and its own referee run instead of a third replica: the honest result
 * is verified, the liar is marked invalid, and the quorum record carries the dispute, checked offline
 * with and without the model.
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

describe('a dispute between tabs', () => {
  let swarm: Swarm
  let requester: Page
  let honest: string
  let liar: string
  beforeAll(async () => {
    swarm = await startSwarm({ tabs: 0, testHooks: true })
    requester = await swarm.openTab()
    const h = await swarm.openTab()
    const l = await swarm.openTab('', { testHooks: { adversary: 'always-wrong', disputeLie: true } })
    for (const t of [h, l]) await t.evaluate(() => window.__peer.setContributing(true))
    ;[honest, liar] = await Promise.all([peerId(h), peerId(l)])
    await waitForContributors(requester, [honest, liar])
  }, 90_000)
  afterAll(() => swarm?.stop())

  it('finds the lie by bisection, marks the liar, verifies the honest result without a third replica', async () => {
    const r = await requester.evaluate(async (cid) => {
      const x = { x: { dtype: 'float32' as const, dims: [1, 16], data: new Float32Array(16).fill(0.25) } }
      const t0 = performance.now()
      const out = await window.__peer.submit(cid, x, {
        policy: { redundancy: 2, quorum: 2, adaptive: false },
      })
      const job = await window.__peer.job(out.id)
      return {
        ms: performance.now() - t0,
        workers: out.workers,
        risk: out.risk,
        sent: job?.replicas?.length,
        record: Array.from(out.record),
        reputation: window.__peer.reputation.all(),
      }
    }, tiny.cid)
    console.log(`dispute settled in ${r.ms.toFixed(0)} ms, ${r.sent} replicas sent`)
    expect(r.workers).toEqual([honest])
    expect(r.sent).toBe(2) // no third replica
    expect(r.reputation.find((p) => p.peer === liar)).toMatchObject({ invalid: 1 })
    expect(r.reputation.find((p) => p.peer === honest)).toMatchObject({ invalid: 0, valid: 1 })
    expect(r.risk).toBeCloseTo(0.1, 6) // the honest worker alone, fresh: the prior

    const record = Uint8Array.from(r.record)
    const blind = await verifyQuorumRecord(record)
    expect(blind.workers).toEqual([honest])
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
