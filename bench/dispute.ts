/**
 * 8. Disputes against a third replica (Node, onnxruntime-node, one thread; in-process parties, metered):
 * a liar lies at the middle node of each model with a trace that agrees with its lie. A third
 * replica costs one run of the plain model and moves its input and output; a dispute over cuts costs
 * both sides' traced runs (none where they kept their traces), the signed cuts each side hashes and
 * signs as it is asked, the search, the referee's one-node run, and the answers' bytes.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import * as ort from 'onnxruntime-node'
import { mlpModelBytes } from '../scripts/gen-models.ts'
import { bisectCuts, type CutDivergence, type CutParty } from '../src/dispute/bisect-cuts.ts'
import { type DisputePlan, disputePlan, disputeRules } from '../src/dispute/commit.ts'
import { type CutCommitter, type CutJob, createCutCommitter } from '../src/dispute/cut-commit.ts'
import { withIntermediateOutputs } from '../src/dispute/onnx-graph.ts'
import { refereeCuts } from '../src/dispute/referee-cuts.ts'
import { modelCid } from '../src/shared/cid.ts'
import { type NamedTensors, tensorsByteLength } from '../src/shared/tensor.ts'
import { tensorsCid } from '../src/shared/tensor-codec.ts'
import type { CompareRule } from '../src/trust/policy.ts'
import { signRecord, verifyRecord } from '../src/trust/signed.ts'
import { lyingTrace, shifted } from '../test/helpers/liar-trace.ts'
import { floats, openSession, ortRun } from '../test/helpers/ort-run.ts'

export interface DisputeRow {
  model: string
  rule: string
  nodes: number
  liarAt: number
  /** How far the liar shifted its node's outputs: the first of LIES that reached the outputs. */
  lie: number
  found: number
  /** Rounds of questions: the ends, the probes and chunk rounds, then the referee's. */
  rounds: number
  refereeRounds: number
  verdict: string
  /** What a third replica moves (input + output) and costs: one plain run ('all'), median of 3. */
  replicaBytes: number
  replicaMs: number
  /**
   * Its receipt's work besides the run, median of 3: the contributor's CIDs of inputs and outputs
   * and its signature, the requester's CID of the outputs and its check of the signature.
   */
  receiptMs: number
  /** What the dispute moves (answers). */
  disputeBytes: number
  /** Tensors each side hashed for its cuts (the larger side), of the trace's, and their bytes. */
  hashedTensors: number
  traceTensors: number
  hashedBytes: number
  /** One side's traced run (graph optimisation disabled), median of 3. */
  traceRunMs: number
  /** The search and the referee, both sides' hashing and signing included, median of 3. */
  settleMs: number
}

/** A third replica's work: its run and its receipt's hashing and signatures. */
export const replicaWorkMs = (r: DisputeRow) => r.replicaMs + r.receiptMs
/** A dispute's work when both sides rerun their traces on demand. */
export const onDemandMs = (r: DisputeRow) => 2 * r.traceRunMs + r.settleMs
/** A dispute's work when both sides kept their traces from the job (JobBody.trace). */
export const keptMs = (r: DisputeRow) => r.settleMs

const MODELS = resolve(import.meta.dirname, '../public/models')
const file = (f: string) => () => new Uint8Array(readFileSync(resolve(MODELS, f)))
/** Compute-bound: 12 layers of 1024×1024 on 64 rows, about 9 MB of intermediates for 1.6 GFLOP. */
const DEEP = { seed: 5, layers: Array.from({ length: 13 }, () => 1024), batch: 64 }
const CASES: { model: string; bytes: () => Uint8Array; inputs: () => NamedTensors }[] = [
  { model: 'mlp-s', bytes: file('mlp-s.onnx'), inputs: () => ({ x: floats([64, 256], 1) }) },
  { model: 'mlp-m', bytes: file('mlp-m.onnx'), inputs: () => ({ x: floats([160, 512], 2) }) },
  { model: 'mlp-l', bytes: file('mlp-l.onnx'), inputs: () => ({ x: floats([448, 1024], 3) }) },
  {
    model: 'mlp-deep 12×1024',
    bytes: () => mlpModelBytes(DEEP),
    inputs: () => ({ x: floats([64, 1024], 6) }),
  },
  {
    model: 'ppocr-v4-det 1×3×64×256',
    bytes: file('vendor/ch_PP-OCRv4_det_infer.onnx'),
    inputs: () => ({ x: floats([1, 3, 64, 256], 4) }),
  },
  {
    model: 'ppocr-v4-det 1×3×320×320',
    bytes: file('vendor/ch_PP-OCRv4_det_infer.onnx'),
    inputs: () => ({ x: floats([1, 3, 320, 320], 4) }),
  },
]
const RULES: [string, CompareRule][] = [
  ['exact', { kind: 'exact' }],
  ['tolerance 1e-3', { kind: 'tolerance', atol: 1e-3, rtol: 1e-3 }],
]

/** Shifts a liar tries at its node, in turn, until one reaches the outputs (saturating nodes hide small ones). */
const LIES = [0.5, 100, -100]
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!
async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now()
  const v = await f()
  return [v, performance.now() - t0]
}

/** Median of 3 runs of one session (its creation not counted), and the last outputs. */
async function runs(bytes: Uint8Array, inputs: NamedTensors, level: 'all' | 'disabled') {
  const session = await openSession(ort, bytes, level)
  try {
    const ms: number[] = []
    let out: NamedTensors = {}
    for (let i = 0; i < 3; i++) {
      const [o, t] = await timed(() => session.run(inputs))
      ms.push(t)
      out = o
    }
    return { ms: median(ms), out }
  } finally {
    await session.release()
  }
}

/** A committer's answers as a CutParty, counting the bytes each answer would take on the wire and the tensors its cuts named. */
function meteredCut(c: CutCommitter, meter: { bytes: number }, named: Set<string>): CutParty {
  const add = <T>(v: T, n: number) => {
    meter.bytes += n
    return v
  }
  return {
    cut: async (p) => {
      const signed = await c.commit(p)
      const cut = dagCbor.decode(signed) as { body: { tensors: { name: string }[] } }
      for (const t of cut.body.tensors) named.add(t.name)
      return add(signed, signed.byteLength)
    },
    chunkHashes: async (name) => {
      const h = await c.chunkHashes(name)
      return add(h, 32 * (h.exact.length + (h.coarse?.length ?? 0) + (h.shifted?.length ?? 0)))
    },
    chunks: async (name, indices) => {
      const got = await c.chunks(name, indices)
      return add(
        got,
        got.reduce((n, x) => n + x.byteLength, 0),
      )
    },
    tensor: async (name) => {
      const t = await c.tensor(name)
      return add(t, t.data.byteLength)
    },
  }
}

/** A replica's receipt work besides its run (median of 3 ms): CIDs both ends, a signature and its check. */
async function receiptWork(inputs: NamedTensors, outputs: NamedTensors): Promise<number> {
  const key = await generateKeyPair('Ed25519')
  const worker = peerIdFromPrivateKey(key).toString()
  const ms: number[] = []
  for (let i = 0; i < 3; i++) {
    const [, t] = await timed(async () => {
      const body = { input: await tensorsCid(inputs), output: await tensorsCid(outputs), worker }
      const sig = await signRecord('bench/receipt', body, key)
      await tensorsCid(outputs)
      await verifyRecord('bench/receipt', body, sig, worker)
    })
    ms.push(t)
  }
  return median(ms)
}

/** One dispute between an honest trace and a liar's, over cuts, in process. */
async function settle(
  plan: DisputePlan,
  rules: ReturnType<typeof disputeRules>,
  inputs: NamedTensors,
  traces: [NamedTensors, NamedTensors],
  job: CutJob,
) {
  const keys = await Promise.all([generateKeyPair('Ed25519'), generateKeyPair('Ed25519')])
  const workers = { a: peerIdFromPrivateKey(keys[0]).toString(), b: peerIdFromPrivateKey(keys[1]).toString() }
  const meter = { bytes: 0 }
  const full = traces.map((trace) => ({ ...inputs, ...trace }))
  const committers = full.map((trace, i) => createCutCommitter({ trace, plan, rules, key: keys[i]!, ...job }))
  const named = [new Set<string>(), new Set<string>()]
  const a = meteredCut(committers[0]!, meter, named[0]!)
  const b = meteredCut(committers[1]!, meter, named[1]!)
  const [out, ms] = await timed(async () => {
    const d: CutDivergence = await bisectCuts({ plan, rules, a, b, workers, job, inputs })
    return { d, s: await refereeCuts({ plan, rules, divergence: d, a, b, jobInputs: inputs, run: ortRun }) }
  })
  // Bytes each side hashed: every tensor its cuts named, once (the committer hashes each once).
  const hashedBytes = named.map((names, i) =>
    [...names].reduce((n, k) => n + full[i]![k]!.data.byteLength, 0),
  )
  return { ...out, ms, bytes: meter.bytes, committers, hashedBytes }
}

async function one(plan: DisputePlan, rule: [string, CompareRule], inputs: NamedTensors, model: string) {
  const rules = disputeRules(rule[1])
  const liarAt = plan.leaves.length >> 1
  const trace = await runs(withIntermediateOutputs(plan.model), inputs, 'disabled')
  const honest = trace.out
  const job: CutJob = {
    job: await modelCid(new TextEncoder().encode(`bench ${model}`)),
    model: await modelCid(plan.model.bytes),
    input: await tensorsCid(inputs),
  }
  // A lie that no output shows is no dispute (the replicas' results would agree): try a larger one.
  let lie = 0
  let liar: NamedTensors = {}
  const found = async () => settle(plan, rules, inputs, [honest, liar], job)
  let first: Awaited<ReturnType<typeof found>> | undefined
  for (const by of LIES) {
    lie = by
    liar = await lyingTrace(plan, honest, inputs, liarAt, shifted(by))
    first = await found().catch((err: Error) =>
      err.name === 'NoDivergenceError' ? undefined : Promise.reject(err),
    )
    if (first) break
  }
  if (!first) throw new Error(`no lie at ${liarAt} of ${model} reaches its outputs`)
  const timings = [first.ms, (await found()).ms, (await found()).ms]
  const plain = await runs(plan.model.bytes, inputs, 'all')
  const receipt = await receiptWork(inputs, plain.out)
  const hashed = Math.max(...first.committers.map((c) => c.hashed))
  return {
    model,
    rule: rule[0],
    nodes: plan.leaves.length,
    liarAt,
    lie,
    found: first.d.leaf,
    rounds: first.d.rounds,
    refereeRounds: first.s.rounds,
    verdict: first.s.verdict,
    replicaBytes: tensorsByteLength(inputs) + tensorsByteLength(plain.out),
    replicaMs: plain.ms,
    receiptMs: receipt,
    disputeBytes: first.bytes,
    hashedTensors: hashed,
    traceTensors: Object.keys({ ...inputs, ...honest }).length,
    hashedBytes: Math.max(...first.hashedBytes),
    traceRunMs: trace.ms,
    settleMs: median(timings),
  } satisfies DisputeRow
}

export async function disputeBench(quick: boolean, log: (s: string) => void): Promise<DisputeRow[]> {
  const rows: DisputeRow[] = []
  for (const c of quick ? CASES.slice(0, 1) : CASES) {
    const plan = disputePlan(c.bytes())
    for (const rule of RULES) {
      const row = await one(plan, rule, c.inputs(), c.model)
      log(`dispute ${c.model} ${rule[0]}: ${JSON.stringify(row)}`)
      rows.push(row)
    }
  }
  return rows
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(JSON.stringify(await disputeBench(process.argv.includes('--quick'), console.error), null, 2))
}

/** The report's table: a dispute against a third replica, side by side. */
export function disputeTable(rows: DisputeRow[]): string {
  const head =
    '| model | rule | nodes | liar at / found (lie) | rounds (search + referee) | log2 N + 2 | third replica: bytes; run + receipt ms | dispute bytes | tensors hashed per side (of trace), MB | traced run ms | settle ms | dispute work, on demand / kept traces (ms) | kept < replica | traced job extra ms |'
  const sep = `|${' --- |'.repeat(14)}`
  const body = rows.map(
    (r) =>
      `| ${r.model} | ${r.rule} | ${r.nodes} | ${r.liarAt} / ${r.found} (${r.lie}) | ${r.rounds} + ${r.refereeRounds} | ${(Math.log2(r.nodes) + 2).toFixed(1)} | ${r.replicaBytes}; ${r.replicaMs.toFixed(1)} + ${r.receiptMs.toFixed(1)} | ${r.disputeBytes} | ${r.hashedTensors} (${r.traceTensors}), ${(r.hashedBytes / 1e6).toFixed(2)} | ${r.traceRunMs.toFixed(1)} | ${r.settleMs.toFixed(1)} | ${onDemandMs(r).toFixed(0)} / ${keptMs(r).toFixed(0)} | ${keptMs(r) < replicaWorkMs(r) ? 'yes' : 'no'} | ${(r.traceRunMs - r.replicaMs).toFixed(1)} |`,
  )
  return `## 8. Disputes over cuts against a third replica (Node, one thread; a liar at the middle node)\n\n${[head, sep, ...body].join('\n')}\n\nOn demand, both sides rerun their traces (graph optimisation disabled); with kept traces (the requester asked for traced jobs, JobBody.trace) they do not, and every traced job pays its traced run in place of the plain one (the last column). Settling includes both sides hashing and signing the cuts they are asked for.`
}
