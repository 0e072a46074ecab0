/** The IndexedDB journal's timing over a Store stub: what it writes, when, and its pruning. */
import { logger } from '@libp2p/logger'
import { describe, expect, it, vi } from 'vitest'
import { agreeingPeers, createStoreJournal, type JobSpec, jobRecord } from '../../src/jobs/journal.ts'
import type { QuorumState } from '../../src/jobs/quorum.ts'
import type { Store } from '../../src/store/db.ts'
import { policyFor } from '../../src/trust/policy.ts'

const spec: JobSpec = { v: 1, model: 'm', modelName: 'm', policy: policyFor('tensor'), createdAt: 1 }
const x = { x: { dtype: 'float32' as const, dims: [1], data: Float32Array.of(1) } }
const fresh = (): QuorumState => ({ replicas: [], target: 2, quorum: 2, adaptiveSingle: false })

function stubStore() {
  const saves: { id: string; status: string; pending: unknown; inputs: boolean; opts: unknown }[] = []
  let prunes = 0
  const store = {
    async saveJobState(
      rec: { id: string; status: string },
      pending: unknown,
      inputs: unknown,
      opts: unknown,
    ) {
      saves.push({ id: rec.id, status: rec.status, pending, inputs: inputs != null, opts })
    },
    async pruneJobs() {
      prunes++
      return 0
    },
  } as unknown as Store
  return { store, saves, prunes: () => prunes }
}

describe('store journal', () => {
  it('writes a new job with its inputs once, held back as asked', async () => {
    const s = stubStore()
    const j = createStoreJournal({ store: s.store, log: logger('t'), onChange() {}, jobHistory: 10 })
    await j.begin('a', spec, fresh(), x, 200)
    expect(s.saves).toMatchObject([{ id: 'a', status: 'running', inputs: true, opts: { deferMs: 200 } }])
    const pending = s.saves[0]!.pending as { state: { quorum: unknown; model: string } }
    expect(pending.state.model).toBe('m') // the stored form is the journal's own
    expect(pending.state.quorum).toBeDefined()
  })

  it('writes progress behind the loop, latest only, and nothing after close', async () => {
    vi.useFakeTimers()
    try {
      const s = stubStore()
      const j = createStoreJournal({ store: s.store, log: logger('t'), onChange() {}, jobHistory: 10 })
      const q = fresh()
      const p = j.progress('a', spec, q)
      for (let i = 0; i < 5; i++) p.mark()
      await vi.advanceTimersByTimeAsync(1000)
      expect(s.saves).toHaveLength(1) // five marks, one write
      expect(s.saves[0]).toMatchObject({ status: 'running', opts: { relaxed: true } })
      p.mark()
      await p.close()
      await vi.advanceTimersByTimeAsync(2000)
      expect(s.saves).toHaveLength(1)
    } finally {
      vi.useRealTimers()
    }
  })

  it('ends a job by dropping its pending state, and prunes after the first end and every 100th', async () => {
    const s = stubStore()
    const changed = vi.fn()
    const j = createStoreJournal({ store: s.store, log: logger('t'), onChange: changed, jobHistory: 10 })
    for (let i = 0; i < 101; i++) {
      await j.end(
        { id: `e${i}`, model: 'm', modelName: 'm', status: 'verified', submittedAt: 1, verified: true },
        0,
      )
    }
    expect(s.saves.every((w) => w.pending === null)).toBe(true)
    expect(s.prunes()).toBe(2)
    expect(changed).toHaveBeenCalledTimes(101)
  })

  it('keeps the policy a job ran under in its record, for the jobs drawer', () => {
    const rec = jobRecord('a', spec, { ...fresh(), state: 'failed', reason: 'r' })
    expect(rec.policy).toEqual(spec.policy)
    expect(rec).toMatchObject({ status: 'failed', reason: 'r' })
  })
})

describe('agreeingPeers', () => {
  it("takes runQuorum's accepted group as found, and recomputes only for states stored before it", () => {
    const ok = (peer: string, v: number) => ({
      peer,
      status: 'ok' as const,
      startedAt: 0,
      result: {
        job: 'j',
        outputs: { y: { dtype: 'float32' as const, dims: [1], data: Float32Array.of(v) } },
        receipt: {} as never,
        outputCid: `c${v}`,
        roundTripMs: 1,
      },
    })
    const q: QuorumState = { ...fresh(), state: 'verified', replicas: [ok('a', 1), ok('b', 2), ok('c', 2)] }
    expect(agreeingPeers(q, spec.policy)).toEqual(['b', 'c']) // recomputed: no `agreed` stored
    // runQuorum's own group wins, even where recomputing would give another (a dispute's lone winner).
    expect(agreeingPeers({ ...q, agreed: ['a'] }, spec.policy)).toEqual(['a'])
  })
})
