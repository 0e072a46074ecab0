/** The quorum state machine with scripted contributors (logic only: no network). */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import { describe, expect, it, vi } from 'vitest'
import { REJECT_CODES, type RejectCode } from '../../src/jobs/messages.ts'
import {
  type DispatchResult,
  type DisputeOutcome,
  disputeWinner,
  type QuorumEffects,
  type QuorumState,
  runQuorum,
} from '../../src/jobs/quorum.ts'
import { JobRejectedError, JobTimeoutError } from '../../src/shared/errors.ts'
import type { NamedTensors } from '../../src/shared/tensor.ts'
import { tensorsCid } from '../../src/shared/tensor-codec.ts'
import { policyFor, type VerificationPolicy } from '../../src/trust/policy.ts'
import { signReceipt } from '../../src/trust/receipt.ts'
import type { Outcome } from '../../src/trust/reputation.ts'

/** off: just past the 'tensor' rule's tolerance of honest; mid: within it of both. */
type Behaviour = 'honest' | 'wrong' | 'off' | 'mid' | 'timeout' | 'busy' | RejectCode
const VALUES: Partial<Record<Behaviour, number>> = {
  honest: 0.5,
  wrong: 42,
  off: 0.5 + 2.6e-4,
  mid: 0.5 + 1.3e-4,
}

const keys = await Promise.all([0, 1, 2, 3, 4].map(() => generateKeyPair('Ed25519')))
const peers = keys.map((k) => peerIdFromPrivateKey(k).toString())
const cid = CID.parse('bafkreidyllbzbuwb2fdgttvsc6notidx5yr5wgl6z2qhcptapjy3pkxbja')
const tensor = (v: number): NamedTensors => ({
  y: { dtype: 'float32', dims: [1, 2], data: Float32Array.from([v, 1]) },
})

async function result(i: number, value: number): Promise<DispatchResult> {
  const outputs = tensor(value)
  const receipt = await signReceipt(
    {
      v: 1,
      job: cid,
      model: cid,
      input: cid,
      output: await tensorsCid(outputs),
      worker: peers[i]!,
      requester: peers[4]!,
      ep: 'wasm',
      adapter: 'none',
      timing: { queueUs: 0, runUs: 1000 },
      ts: 0,
    },
    keys[i]!,
  )
  return { job: cid.toString(), worker: peers[i]!, outputs, receipt, roundTripMs: 1 }
}

function harness(behaviour: Behaviour[], opts: { trusted?: boolean } = {}) {
  const outcomes: [string, Outcome][] = []
  const dispatched: string[] = []
  const fx: QuorumEffects = {
    pick: (exclude) => peers.slice(0, behaviour.length).find((p) => !exclude.has(p)),
    eligible: (exclude) => peers.slice(0, behaviour.length).filter((p) => !exclude.has(p)).length,
    capacityChanged: () => new Promise((r) => setTimeout(r, 5)),
    async dispatch(peer) {
      dispatched.push(peer)
      const i = peers.indexOf(peer)
      const b = behaviour[i]
      if (b === 'timeout') throw new JobTimeoutError('late')
      if (b === 'busy') {
        behaviour[i] = 'honest' // busy once, then free
        throw Object.assign(new JobRejectedError('busy'), { code: 'busy' })
      }
      const v = b === undefined ? undefined : VALUES[b]
      if (v !== undefined) return result(i, v)
      throw Object.assign(new JobRejectedError(`${peer} rejected the job (${b}): no`), { code: b })
    },
    singleReplicaOk: () => opts.trusted ?? false,
    suspicious: () => false,
    recordOutcome: async (peer, o) => {
      outcomes.push([peer, o])
    },
    save: async () => {},
  }
  return { fx, outcomes, dispatched }
}

const start = (p: VerificationPolicy): QuorumState => ({
  replicas: [],
  target: p.redundancy,
  quorum: p.quorum,
  adaptiveSingle: false,
})
const run = (p: VerificationPolicy, fx: QuorumEffects) => runQuorum(start(p), p, fx, Date.now() + 5000)
const value = (s: QuorumState) =>
  s.replicas.find((r) => r.status === 'ok' && r.result!.outputs.y!.data[0] === 0.5) != null

describe('runQuorum', () => {
  it('verifies when q of r agree and marks the liar invalid', async () => {
    const p = policyFor('tensor', { redundancy: 3, quorum: 2, adaptive: false })
    const h = harness(['honest', 'wrong', 'honest'])
    const s = await run(p, h.fx)
    expect(s.state).toBe('verified')
    expect(value(s)).toBe(true)
    // The liar may answer after the verdict: a late replica is judged when it ends.
    await vi.waitFor(() => expect(h.outcomes).toContainEqual([peers[1], 'invalid']))
    expect(h.outcomes.filter(([, o]) => o === 'valid')).toHaveLength(2)
  })

  it('under exact comparison, a replica of another class that differs is drift, not a lie', async () => {
    const p = policyFor('tensor', { redundancy: 3, quorum: 2, adaptive: false, compare: { kind: 'exact' } })
    // peers 0 and 2 are one class (say WASM tabs); peer 1 is another (a native peer), whose bits differ.
    const classes = [0, 1, 0]
    const h = harness(['honest', 'wrong', 'honest'])
    h.fx.sameClass = (a, b) => classes[peers.indexOf(a)] === classes[peers.indexOf(b)]
    const s = await run(p, h.fx)
    expect(s.state).toBe('verified')
    await new Promise((r) => setTimeout(r, 20)) // a late replica is judged as it ends
    expect(h.outcomes.filter(([, o]) => o === 'valid')).toHaveLength(2)
    expect(h.outcomes.filter(([peer]) => peer === peers[1])).toEqual([])
    // Within one class the same difference is a lie.
    const same = harness(['honest', 'wrong', 'honest'])
    same.fx.sameClass = () => true
    await run(p, same.fx)
    await vi.waitFor(() => expect(same.outcomes).toContainEqual([peers[1], 'invalid']))
  })

  it('counts a valid result as a check only when another peer agreed with it', async () => {
    const checks: [string, Outcome, boolean | undefined][] = []
    const pair = harness(['honest', 'honest'])
    pair.fx.recordOutcome = async (peer, o, checked) => void checks.push([peer, o, checked])
    await run(policyFor('tensor', { redundancy: 2, quorum: 2, adaptive: false }), pair.fx)
    expect(checks).toEqual([
      [peers[0], 'valid', true],
      [peers[1], 'valid', true],
    ])
    checks.length = 0
    const alone = harness(['honest'], { trusted: true })
    alone.fx.recordOutcome = async (peer, o, checked) => void checks.push([peer, o, checked])
    const s = await run(policyFor('tensor', { redundancy: 2, quorum: 2, adaptive: true }), alone.fx)
    expect(s.adaptiveSingle).toBe(true)
    expect(checks).toEqual([[peers[0], 'valid', false]])
  })

  it('states the risk of a verified result from the agreeing peers, before this job counts for them', async () => {
    const p = policyFor('tensor', { redundancy: 3, quorum: 2, adaptive: false })
    const h = harness(['honest', 'wrong', 'honest'])
    const asked: { peers: string[]; outcomesSoFar: number }[] = []
    h.fx.statedRisk = (ps) => {
      asked.push({ peers: [...ps].sort(), outcomesSoFar: h.outcomes.filter(([, o]) => o === 'valid').length })
      return 0.0123
    }
    const s = await run(p, h.fx)
    expect(s.state).toBe('verified')
    expect(s.risk).toBe(0.0123)
    expect(asked).toEqual([{ peers: [peers[0], peers[2]].sort(), outcomesSoFar: 0 }])
  })

  it('adds a replica after a 1–1 disagreement', async () => {
    const p = policyFor('tensor', { redundancy: 2, quorum: 2, adaptive: false })
    const h = harness(['wrong', 'honest', 'honest'])
    const s = await run(p, h.fx)
    expect(s.state).toBe('verified')
    expect(h.dispatched).toHaveLength(3)
  })

  it('reissues a timed-out replica to another peer', async () => {
    const p = policyFor('tensor', { redundancy: 2, quorum: 2, adaptive: false })
    const h = harness(['timeout', 'honest', 'honest'])
    const s = await run(p, h.fx)
    expect(s.state).toBe('verified')
    expect(h.outcomes).toContainEqual([peers[0], 'timedOut'])
  })

  it('ends inconclusive when replicas keep disagreeing up to maxAttempts', async () => {
    const p = policyFor('tensor', { redundancy: 2, quorum: 2, adaptive: false, maxAttempts: 2 })
    const h = harness(['wrong', 'honest'])
    const s = await run(p, h.fx)
    expect(s.state).toBe('inconclusive')
    expect(h.outcomes.some(([, o]) => o === 'invalid')).toBe(false) // nothing proven without a quorum
  })

  it.each(REJECT_CODES.filter((c) => c !== 'busy'))(
    "a '%s' refusal is one replica's outcome: the job goes on to others",
    async (code) => {
      const p = policyFor('tensor', { redundancy: 2, quorum: 2, adaptive: false, maxAttempts: 2 })
      const h = harness([code, 'honest', 'honest'])
      const s = await run(p, h.fx)
      expect(s.state).toBe('verified')
      // Not an attempt: maxAttempts 2 still left room for both honest replicas.
      expect(s.replicas.map((r) => r.status)).toEqual(['refused', 'ok', 'ok'])
      // Punished only where it called a job bad that others computed fine.
      const punished = ['unknown-model', 'bad-request', 'bad-signature', 'too-large', 'internal']
      expect(h.outcomes.filter(([peer]) => peer === peers[0])).toEqual(
        punished.includes(code) ? [[peers[0], 'refused']] : [],
      )
    },
  )

  it('fails on refusals only when every eligible contributor refused, listing each', async () => {
    const p = policyFor('tensor', { redundancy: 2, quorum: 2, adaptive: false })
    const h = harness(['unknown-model', 'bad-request', 'internal'])
    const s = await run(p, h.fx)
    expect(s.state).toBe('failed')
    expect(s.reason).toMatch(/^every eligible contributor refused \(3\)/)
    for (const code of ['unknown-model', 'bad-request', 'internal']) expect(s.reason).toContain(code)
    expect(h.outcomes).toEqual([]) // nobody computed it: nothing proves a refusal wrong
  })

  it('waits out the refusal grace for a contributor that links late', async () => {
    const p = policyFor('tensor', { redundancy: 1, quorum: 1, adaptive: false })
    const h = harness(['bad-request', 'honest'])
    let linked = false
    setTimeout(() => {
      linked = true
    }, 100)
    const { pick, eligible } = h.fx
    h.fx.pick = (ex, same) => (linked ? pick(ex, same) : ex.has(peers[0]!) ? undefined : peers[0])
    h.fx.eligible = (ex) => (linked ? eligible(ex) : ex.has(peers[0]!) ? 0 : 1)
    h.fx.refusalGraceMs = 1000
    const s = await run(p, h.fx)
    expect(s.state).toBe('verified')
    expect(s.replicas.map((r) => r.status)).toEqual(['refused', 'ok'])
  })

  it('never re-sends a job to a contributor that refused it', async () => {
    const p = policyFor('tensor', { redundancy: 2, quorum: 2, adaptive: false })
    const h = harness(['bad-request', 'honest'])
    const s = await runQuorum(start(p), p, h.fx, Date.now() + 300)
    expect(s.state).toBe('inconclusive') // one honest contributor cannot make a quorum of 2
    expect(s.reason).toBe('deadline passed')
    expect(h.dispatched.filter((x) => x === peers[0])).toHaveLength(1)
  })

  it('fails when no contributor ever answers before the deadline', async () => {
    const p = policyFor('tensor', { redundancy: 1, quorum: 1, adaptive: false })
    const s = await runQuorum(start(p), p, harness([]).fx, Date.now() + 200)
    expect(s.state).toBe('failed')
    expect(s.reason).toBe('deadline passed')
  })

  it('does not count a busy refusal as an attempt', async () => {
    const p = policyFor('tensor', { redundancy: 1, quorum: 1, adaptive: false, maxAttempts: 1 })
    const s = await run(p, harness(['busy']).fx)
    expect(s.state).toBe('verified')
    // Counted apart, not kept as a replica: the jobs table shows replicas and busy retries apart.
    expect(s.replicas.map((r) => r.status)).toEqual(['ok'])
    expect(s.busy).toBe(1)
  })

  it('runs one replica on a trusted peer under adaptive replication', async () => {
    const p = policyFor('tensor', { redundancy: 2, quorum: 2, adaptive: true })
    const h = harness(['honest', 'honest'], { trusted: true })
    const s = await run(p, h.fx)
    expect(s.state).toBe('verified')
    expect(s.adaptiveSingle).toBe(true)
    expect(h.dispatched).toHaveLength(1)
  })

  it('saves a job waiting for capacity once, not at every capacity change', async () => {
    const p = policyFor('tensor', { redundancy: 1, quorum: 1, adaptive: false })
    const h = harness(['honest'])
    let free = false
    let wakes = 0
    const saves: string[] = []
    const pick = h.fx.pick
    h.fx.pick = (exclude, same) => (free ? pick(exclude, same) : undefined)
    h.fx.capacityChanged = async () => {
      await new Promise((r) => setTimeout(r, 1))
      if (++wakes === 20) free = true // someone else's capacity changes 19 times first
    }
    h.fx.save = async (st) => {
      saves.push(st.state ?? (st.replicas.map((r) => r.status).join(',') || 'waiting'))
    }
    const s = await run(p, h.fx)
    expect(s.state).toBe('verified')
    expect(wakes).toBe(20)
    // The dispatch, the replica's end and the verdict: nothing while it waited (its state was given).
    expect(saves).toEqual(['dispatched', 'ok', 'verified'])
  })

  it('resumes a saved state: lost replicas are redone, finished ones kept', async () => {
    const p = policyFor('tensor', { redundancy: 2, quorum: 2, adaptive: false })
    const first = await result(0, 0.5)
    const saved: QuorumState = {
      ...start(p),
      replicas: [
        {
          peer: peers[0]!,
          status: 'ok',
          startedAt: 0,
          result: { ...first, outputCid: first.receipt.body.output.toString() },
        },
        { peer: peers[1]!, status: 'dispatched', startedAt: 0 },
      ],
    }
    const h = harness(['honest', 'honest'])
    const s = await runQuorum(saved, p, h.fx, Date.now() + 5000)
    expect(s.state).toBe('verified')
    expect(h.dispatched).toEqual([peers[1]])
    expect(s.replicas.map((r) => r.status)).toEqual(['ok', 'lost', 'ok'])
  })
})

describe('late replicas', () => {
  it('are judged against the verified result when they arrive after the quorum', async () => {
    const { fx, outcomes } = harness(['honest', 'honest', 'wrong'])
    let release!: () => void
    const later = new Promise<void>((r) => {
      release = r
    })
    const dispatch = fx.dispatch
    fx.dispatch = async (peer, t, sig) => {
      if (peer === peers[2]) await later // the liar answers last
      return dispatch(peer, t, sig)
    }
    const policy = policyFor('tensor', { redundancy: 3, quorum: 2, adaptive: false })
    const s = await runQuorum(start(policy), policy, fx, Date.now() + 10_000)
    expect(s.state).toBe('verified')
    expect(outcomes.filter(([p]) => p === peers[2])).toEqual([])
    release()
    await new Promise((r) => setTimeout(r, 50))
    expect(outcomes.filter(([p]) => p === peers[2])).toEqual([[peers[2], 'invalid']])
  })
})

describe('runQuorum doubts a lone adaptive result', () => {
  it('replicates a trusted single result that looks wrong before accepting it', async () => {
    const h = harness(['honest', 'honest'], { trusted: true })
    h.fx.suspicious = (r) => r.worker === peers[0]
    const p = policyFor('tensor', { redundancy: 2, quorum: 2, adaptive: true })
    const s = await run(p, h.fx)
    expect(s.state).toBe('verified')
    expect(s).toMatchObject({ escalated: true, adaptiveSingle: false, quorum: 2 })
    expect(h.dispatched).toEqual([peers[0], peers[1]])
    expect(s.agreed).toEqual([peers[0], peers[1]])
  })
})

describe('runQuorum settles a 1–1 disagreement by dispute', () => {
  const p = policyFor('tensor', { redundancy: 2, quorum: 2, adaptive: false })
  const evidence: Pick<DisputeOutcome, 'record' | 'signed'> = {
    record: Uint8Array.of(1, 2, 3),
    signed: { a: Uint8Array.of(1), b: Uint8Array.of(2) },
  }
  /** A harness whose dispute answers `out` and notes the peers it was asked about. */
  const disputing = (behaviour: Behaviour[], out: DisputeOutcome | undefined | Error) => {
    const h = harness(behaviour)
    const asked: string[][] = []
    h.fx.dispute = async (a, b) => {
      asked.push([a.peer, b.peer])
      if (out instanceof Error) throw out
      return out
    }
    h.fx.statedRisk = (ps) => (ps.length === 1 && ps[0] === peers[0] ? 0.1 : 0.5)
    return { ...h, asked }
  }

  it('convicts the liar at the verdict, then buys a third replica: no stranger decides alone', async () => {
    const h = disputing(['honest', 'wrong', 'honest'], { verdict: 'b-invalid', ...evidence })
    const checks: [string, Outcome, boolean | undefined][] = []
    h.fx.recordOutcome = async (peer, o, checked) => void checks.push([peer, o, checked])
    const s = await run(p, h.fx)
    expect(s.state).toBe('verified')
    expect(h.asked).toEqual([[peers[0], peers[1]]])
    expect(h.dispatched).toEqual([peers[0], peers[1], peers[2]])
    expect(s.dispute).toMatchObject({ verdict: 'b-invalid', accepted: 'a', peers: [peers[0], peers[1]] })
    expect(s.dispute!.alone).toBe(false)
    expect(disputeWinner(s.dispute!)).toBe(peers[0])
    expect(s.dispute!.record).toEqual(evidence.record)
    expect(s.replicas[1]).toMatchObject({ peer: peers[1], status: 'ok', convicted: true })
    // The liar is punished once, at the verdict; the two agreeing whole results check each other.
    expect(checks).toEqual([
      [peers[1], 'invalid', undefined],
      [peers[0], 'valid', true],
      [peers[2], 'valid', true],
    ])
    expect(s.quorum).toBe(2)
    expect(s.agreed).toEqual([peers[0], peers[2]]) // the accepted group, for the job's record
    expect(s.risk).toBe(0.5) // two workers agreeing, not the winner alone
  })

  it('counts nothing that agrees with the convicted result: two colluders neither outvote nor punish the upheld side', async () => {
    const h = disputing(['honest', 'wrong', 'wrong', 'wrong', 'honest'], {
      verdict: 'b-invalid',
      ...evidence,
    })
    const checks: [string, Outcome, boolean | undefined][] = []
    h.fx.recordOutcome = async (peer, o, checked) => void checks.push([peer, o, checked])
    const s = await run(p, h.fx)
    // Peers 2 and 3 agree with the convicted peer 1: before, they were a quorum of two, the wrong
    // result was accepted and peer 0 (whom the referee upheld) punished.
    expect(s.state).toBe('verified')
    expect(h.dispatched).toEqual(peers)
    expect(s.agreed).toEqual([peers[0], peers[4]])
    expect(checks).toEqual([
      [peers[1], 'invalid', undefined],
      [peers[0], 'valid', true],
      [peers[4], 'valid', true],
      [peers[2], 'invalid', undefined],
      [peers[3], 'invalid', undefined],
    ])
  })

  it('under a tolerance, a result within it of both the convicted and the upheld side joins the upheld one', async () => {
    const h = disputing(['off', 'honest', 'mid', 'honest'], { verdict: 'a-invalid', ...evidence })
    const checks: [string, Outcome, boolean | undefined][] = []
    h.fx.recordOutcome = async (peer, o, checked) => void checks.push([peer, o, checked])
    const s = await run(p, h.fx)
    expect(s.state).toBe('verified')
    expect(s.agreed).toEqual([peers[1], peers[2]])
    expect(checks).toEqual([
      [peers[0], 'invalid', undefined],
      [peers[1], 'valid', true],
      [peers[2], 'valid', true],
    ])
  })

  it('accepts the confirmed side alone only where adaptive replication trusts its worker', async () => {
    const h = disputing(['wrong', 'honest', 'honest'], { verdict: 'a-invalid', ...evidence })
    const checks: [string, Outcome, boolean | undefined][] = []
    h.fx.recordOutcome = async (peer, o, checked) => void checks.push([peer, o, checked])
    h.fx.singleReplicaOk = (peer) => peer === peers[1]
    const adaptive = policyFor('tensor', { redundancy: 2, quorum: 2, adaptive: true })
    const s = await run(adaptive, h.fx)
    expect(s.state).toBe('verified')
    expect(h.dispatched).toEqual([peers[0], peers[1]])
    expect(s.dispute).toMatchObject({ accepted: 'b', alone: true })
    expect(s.quorum).toBe(1) // the record claims one result, not a quorum of two
    expect(s.agreed).toEqual([peers[1]])
    expect(value(s)).toBe(true)
    expect(checks).toEqual([
      [peers[0], 'invalid', undefined],
      [peers[1], 'valid', false],
    ])
    expect(s.risk).toBe(0.5)
  })

  it('never lets a doubted result stand alone, trusted worker or not', async () => {
    const h = disputing(['honest', 'wrong', 'honest'], { verdict: 'b-invalid', ...evidence })
    h.fx.singleReplicaOk = (peer) => peer === peers[0]
    h.fx.suspicious = (r) => r.worker === peers[0] // its lone result looked wrong: escalated
    const s = await run(policyFor('tensor', { redundancy: 2, quorum: 2, adaptive: true }), h.fx)
    expect(s.state).toBe('verified')
    expect(s.escalated).toBe(true)
    expect(s.dispute).toMatchObject({ accepted: 'a', alone: false })
    expect(h.dispatched).toEqual([peers[0], peers[1], peers[2]])
    expect(s.agreed).toEqual([peers[0], peers[2]])
  })

  it('does not punish a bad-request refusal of a traced job (a contributor from before traced jobs)', async () => {
    const traced = policyFor('tensor', { redundancy: 2, quorum: 2, adaptive: false, traceJobs: true })
    const h = harness(['bad-request', 'honest', 'honest'])
    const s = await run(traced, h.fx)
    expect(s.state).toBe('verified')
    expect(h.outcomes.filter(([, o]) => o === 'refused')).toEqual([])
    const plain = harness(['bad-request', 'honest', 'honest'])
    await run(policyFor('tensor', { redundancy: 2, quorum: 2, adaptive: false }), plain.fx)
    expect(plain.outcomes).toContainEqual([peers[0], 'refused'])
  })

  it('ends inconclusive when no third replica may be bought, the liar still convicted once', async () => {
    const h = disputing(['honest', 'wrong', 'honest'], { verdict: 'b-invalid', ...evidence })
    const s = await run(
      policyFor('tensor', { redundancy: 2, quorum: 2, adaptive: false, maxAttempts: 2 }),
      h.fx,
    )
    expect(s.state).toBe('inconclusive')
    expect(h.dispatched).toHaveLength(2)
    expect(h.outcomes).toEqual([[peers[1], 'invalid']])
  })

  it('drift punishes no one; the closer side still needs a replica to agree with it', async () => {
    const h = disputing(['honest', 'wrong', 'honest'], { verdict: 'drift', closer: 'a', ...evidence })
    const s = await run(p, h.fx)
    expect(s.state).toBe('verified')
    expect(s.dispute).toMatchObject({ verdict: 'drift', accepted: 'a', alone: false })
    expect(h.dispatched).toHaveLength(3)
    await new Promise((r) => setTimeout(r, 20))
    expect(h.outcomes).toEqual([
      [peers[0], 'valid'],
      [peers[2], 'valid'],
    ])
  })

  it('drift whose closer side the third replica disagrees with: the quorum decides, the dispute leaves the record', async () => {
    const h = disputing(['honest', 'wrong', 'honest'], { verdict: 'drift', closer: 'b', ...evidence })
    const s = await run(p, h.fx)
    expect(s.state).toBe('verified')
    expect(s.dispute).toBeUndefined()
    expect(value(s)).toBe(true)
    expect(h.outcomes.filter(([, o]) => o === 'invalid')).toEqual([]) // drift: not a lie
  })

  it('drift accepts a trusted closer side alone, punishing no one', async () => {
    const h = disputing(['honest', 'wrong', 'honest'], { verdict: 'drift', closer: 'b', ...evidence })
    h.fx.singleReplicaOk = (peer) => peer === peers[1]
    const s = await run(policyFor('tensor', { redundancy: 2, quorum: 2, adaptive: true }), h.fx)
    expect(s.state).toBe('verified')
    expect(s.dispute).toMatchObject({ verdict: 'drift', accepted: 'b', alone: true })
    expect(h.outcomes).toEqual([[peers[1], 'valid']])
    expect(h.dispatched).toHaveLength(2)
  })

  it.each<[string, DisputeOutcome | undefined | Error]>([
    ['both-invalid', { verdict: 'both-invalid', ...evidence }],
    ['undecided', { verdict: 'undecided', reason: 'no divergence' }],
    ['drift with no closer side', { verdict: 'drift', ...evidence }],
    ['a verdict without its record', { verdict: 'b-invalid' }],
    ['no outcome', undefined],
    ['an error', new Error('boom')],
  ])('falls back to a third replica on %s, punishing no one', async (_, out) => {
    const h = disputing(['honest', 'wrong', 'honest'], out)
    const s = await run(p, h.fx)
    expect(s.state).toBe('verified')
    expect(h.asked).toHaveLength(1) // once per job
    expect(h.dispatched).toHaveLength(3)
    expect(s.dispute).toBeUndefined()
    await vi.waitFor(() => expect(h.outcomes).toContainEqual([peers[1], 'invalid'])) // by the quorum
    expect(h.outcomes.filter(([, o]) => o === 'invalid')).toHaveLength(1)
  })

  it('records a party that timed out in the dispute as timed out, then buys a replica', async () => {
    const h = disputing(['honest', 'wrong', 'honest'], { verdict: 'undecided', timedOut: ['b'] })
    const s = await run(p, h.fx)
    expect(s.state).toBe('verified')
    expect(h.dispatched).toHaveLength(3)
    expect(h.outcomes).toContainEqual([peers[1], 'timedOut'])
  })

  it("is not asked when the policy says dispute: false, or under 'exact' across classes", async () => {
    const off = disputing(['honest', 'wrong', 'honest'], { verdict: 'b-invalid', ...evidence })
    await run(policyFor('tensor', { redundancy: 2, quorum: 2, adaptive: false, dispute: false }), off.fx)
    expect(off.asked).toEqual([])
    expect(off.dispatched).toHaveLength(3)
    const exact = policyFor('tensor', {
      redundancy: 2,
      quorum: 2,
      adaptive: false,
      compare: { kind: 'exact' },
    })
    const classes = disputing(['honest', 'wrong', 'honest'], { verdict: 'b-invalid', ...evidence })
    classes.fx.sameClass = (a, b) => a === b
    await run(exact, classes.fx)
    expect(classes.asked).toEqual([])
  })

  it('is not asked while a quorum can still form from replicas in flight (redundancy 3)', async () => {
    const h = disputing(['honest', 'wrong', 'honest'], { verdict: 'b-invalid', ...evidence })
    const s = await run(policyFor('tensor', { redundancy: 3, quorum: 2, adaptive: false }), h.fx)
    expect(s.state).toBe('verified')
    expect(h.asked).toEqual([])
  })

  it('refuses traced jobs compared exactly beside a plain replica of our own', () => {
    const exact = { kind: 'exact' as const }
    expect(() => policyFor('tensor', { traceJobs: true, allowSelf: true, compare: exact })).toThrow(
      expect.objectContaining({ name: 'InvalidPolicyError' }),
    )
    expect(policyFor('tensor', { traceJobs: true, compare: exact }).traceJobs).toBe(true)
    expect(() => policyFor('tensor', { traceJobs: 'yes' as unknown as boolean })).toThrow(/traceJobs/)
  })

  it('rejects a non-boolean dispute flag in a policy', () => {
    expect(() => policyFor('tensor', { dispute: 'yes' as unknown as boolean })).toThrow(
      expect.objectContaining({ name: 'InvalidPolicyError' }),
    )
  })
})
