/**
 * Adaptive replication, measured by running the real scheduler logic (runQuorum, reputation,
 * adaptive parameters) against simulated contributors: the replication factor among honest peers
 * after warm-up, how many jobs it takes to expose a peer that is wrong 10 % of the time, and the
 * stated risk (src/trust/risk.ts, prior = the share of liars) summed over the verified jobs against
 * the wrong results actually accepted.
 */
import '../node/relay/polyfill.ts'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import { ADAPTIVE_DEFAULTS, createAdaptive } from '../src/jobs/adaptive.ts'
import { type QuorumState, runQuorum } from '../src/jobs/quorum.ts'
import type { NamedTensors } from '../src/shared/tensor.ts'
import { tensorsCid } from '../src/shared/tensor-codec.ts'
import { policyFor } from '../src/trust/policy.ts'
import { signReceipt } from '../src/trust/receipt.ts'
import { createReputation, REPUTATION_DEFAULTS } from '../src/trust/reputation.ts'
import { RISK_DEFAULTS, statedRisk } from '../src/trust/risk.ts'

const CID0 = CID.parse('bafkreidyllbzbuwb2fdgttvsc6notidx5yr5wgl6z2qhcptapjy3pkxbja')

interface SimPeer {
  id: string
  key: PrivateKey
  wrongRate: number
}

async function makePeers(n: number, wrongRates: number[]): Promise<SimPeer[]> {
  return Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const key = await generateKeyPair('Ed25519')
      return { id: peerIdFromPrivateKey(key).toString(), key, wrongRate: wrongRates[i] ?? 0 }
    }),
  )
}

/** Seeded PRNG so runs are repeatable. */
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export interface AdaptiveRun {
  jobs: number
  replicasPerJob: number
  /** Among jobs after the warm-up. */
  replicationAfterWarmup: number
  /** Jobs (of the whole stream) until the liar's first wrong result was caught, and until it was excluded. */
  liarExposedAtJob?: number
  liarExcludedAtJob?: number
  wrongAccepted: number
  /** The stated risks of the verified jobs, summed: the wrong results the model expects at most. */
  statedWrong: number
}

export async function simulate(opts: {
  jobs: number
  warmup: number
  liar?: boolean
  seed: number
}): Promise<AdaptiveRun> {
  const random = rng(opts.seed)
  const peers = await makePeers(opts.liar ? 4 : 3, opts.liar ? [0, 0, 0, 0.1] : [0, 0, 0])
  const mem = new Map()
  const rep = await createReputation({
    allReputation: async () => [...mem.values()],
    putReputations: async (rs) => void rs.map((r) => mem.set(r.peer, r)),
    clearReputation: async () => mem.clear(),
  })
  const adaptive = createAdaptive(rep, ADAPTIVE_DEFAULTS, random)
  const policy = policyFor('tensor', { redundancy: 2, quorum: 2, adaptive: true })
  const liar = opts.liar ? peers[3]!.id : undefined
  const out: AdaptiveRun = {
    jobs: opts.jobs,
    replicasPerJob: 0,
    replicationAfterWarmup: 0,
    wrongAccepted: 0,
    statedWrong: 0,
  }
  const risk = { ...RISK_DEFAULTS, prior: (opts.liar ? 1 : 0) / peers.length }
  let replicas = 0
  let replicasAfter = 0
  const truth: NamedTensors = { y: { dtype: 'float32', dims: [1], data: Float32Array.of(1) } }
  const lie: NamedTensors = { y: { dtype: 'float32', dims: [1], data: Float32Array.of(2) } }
  const truthCid = await tensorsCid(truth)
  const lieCid = await tensorsCid(lie)
  let rr = 0
  for (let j = 0; j < opts.jobs; j++) {
    const s: QuorumState = { replicas: [], target: 2, quorum: 2, adaptiveSingle: false }
    await runQuorum(
      s,
      policy,
      {
        pick: (exclude) => {
          const free = peers.filter((p) => !exclude.has(p.id) && rep.trusted(p.id))
          return free.length ? free[(rr++ + Math.floor(random() * free.length)) % free.length]!.id : undefined
        },
        eligible: (exclude) => peers.filter((p) => !exclude.has(p.id) && rep.trusted(p.id)).length,
        capacityChanged: async () => {},
        async dispatch(peerId) {
          const p = peers.find((x) => x.id === peerId)!
          const wrong = random() < p.wrongRate
          const outputs = wrong ? lie : truth
          const body = {
            v: 1 as const,
            job: CID0,
            model: CID0,
            input: CID0,
            output: wrong ? lieCid : truthCid,
            worker: p.id,
            requester: p.id,
            ep: 'wasm',
            adapter: 'none',
            timing: { queueUs: 0, runUs: 1000 },
            ts: 0,
          }
          return {
            job: CID0.toString(),
            worker: p.id,
            outputs,
            receipt: await signReceipt(body, p.key),
            roundTripMs: 1,
          }
        },
        singleReplicaOk: (p) => adaptive.singleReplicaOk(p),
        suspicious: () => false,
        async recordOutcome(peer, o, checked) {
          await rep.record(peer, o, checked)
          if (peer === liar && o === 'invalid') out.liarExposedAtJob ??= j + 1
          if (peer === liar && !rep.trusted(peer)) out.liarExcludedAtJob ??= j + 1
        },
        save: async () => {},
        statedRisk: (ps) =>
          statedRisk(
            ps.map((p) => rep.get(p)),
            risk,
          ),
      },
      Date.now() + 60_000,
    )
    const ok = s.replicas.filter((r) => r.status === 'ok')
    if (s.state === 'verified') out.statedWrong += s.risk ?? 1
    replicas += ok.length
    if (j >= opts.warmup) replicasAfter += ok.length
    if (
      s.state === 'verified' &&
      ok.some((r) => r.result!.outputCid === lieCid.toString() && s.adaptiveSingle)
    )
      out.wrongAccepted++
  }
  out.replicasPerJob = replicas / opts.jobs
  out.replicationAfterWarmup = replicasAfter / (opts.jobs - opts.warmup)
  return out
}

export async function adaptiveBench(trials = 20) {
  const honest = await simulate({ jobs: 1000, warmup: 100, seed: 1 })
  const liarRuns = await Promise.all(
    Array.from({ length: trials }, (_, i) =>
      simulate({ jobs: 1000, warmup: 100, liar: true, seed: 100 + i }),
    ),
  )
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? Number.NaN
  const exposed = liarRuns.map((r) => r.liarExposedAtJob ?? Number.POSITIVE_INFINITY)
  const excluded = liarRuns.map((r) => r.liarExcludedAtJob ?? Number.POSITIVE_INFINITY)
  return {
    params: { ...ADAPTIVE_DEFAULTS, ...REPUTATION_DEFAULTS, redundancy: 2, quorum: 2 },
    honestReplicationAfterWarmup: honest.replicationAfterWarmup,
    honestReplicationOverall: honest.replicasPerJob,
    liar: {
      trials,
      exposedAtJobMedian: med(exposed),
      exposedAtJobMax: Math.max(...exposed),
      excludedAtJobMedian: med(excluded),
      notExcludedWithin1000Jobs: excluded.filter((x) => !Number.isFinite(x)).length,
      wrongAcceptedMedian: med(liarRuns.map((r) => r.wrongAccepted)),
      wrongAcceptedMax: Math.max(...liarRuns.map((r) => r.wrongAccepted)),
      wrongAcceptedMean: liarRuns.reduce((n, r) => n + r.wrongAccepted, 0) / trials,
      statedWrongMean: liarRuns.reduce((n, r) => n + r.statedWrong, 0) / trials,
    },
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(JSON.stringify(await adaptiveBench(), null, 2))
}
