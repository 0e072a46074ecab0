/**
 * 8. Disputes against a third replica (Node, onnxruntime-node, one thread; in-process parties, metered):
 * a liar lies at the middle node of each model with a trace that agrees with its lie. A third
 * replica costs one run of the plain model and moves its input and output; a dispute costs both
 * sides' traced runs and commitments, the rounds of bisection, the referee's one-node run, and the
 * answers' bytes.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import * as ort from 'onnxruntime-node'
import { mlpModelBytes } from '../scripts/gen-models.ts'
import { bisect } from '../src/dispute/bisect.ts'
import { commitTrace, type DisputePlan, disputePlan, disputeRules } from '../src/dispute/commit.ts'
import { withIntermediateOutputs } from '../src/dispute/onnx-graph.ts'
import { localParty, type Meter, metered } from '../src/dispute/party.ts'
import { referee } from '../src/dispute/referee.ts'
import { type NamedTensors, tensorsByteLength } from '../src/shared/tensor.ts'
import type { CompareRule } from '../src/trust/policy.ts'
import { lyingTrace, shifted } from '../test/helpers/liar-trace.ts'
import { floats, openSession, ortRun } from '../test/helpers/ort-run.ts'

export interface DisputeRow {
  model: string
  rule: string
  nodes: number
  liarAt: number
  found: number
  rounds: number
  refereeRounds: number
  verdict: string
  /** What a third replica moves (input + output) and costs: one plain run ('all'), median of 3. */
  replicaBytes: number
  replicaMs: number
  /** What the dispute moves (answers). */
  disputeBytes: number
  /** One side's traced run (graph optimisation disabled), median of 3, and its commitment. */
  traceRunMs: number
  commitMs: number
  /** Bisection and the referee's one-node run. */
  settleMs: number
}

/** A dispute's work when both sides rerun their traces on demand. */
export const onDemandMs = (r: DisputeRow) => 2 * (r.traceRunMs + r.commitMs) + r.settleMs
/** A dispute's work when both sides kept their traces from the job (JobBody.trace). */
export const keptMs = (r: DisputeRow) => 2 * r.commitMs + r.settleMs

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

async function one(plan: DisputePlan, rule: [string, CompareRule], inputs: NamedTensors, model: string) {
  const rules = disputeRules(rule[1])
  const liarAt = plan.leaves.length >> 1
  const trace = await runs(withIntermediateOutputs(plan.model), inputs, 'disabled')
  const honest = trace.out
  const liar = await lyingTrace(plan, honest, inputs, liarAt, shifted(0.5))
  const meter: Meter = { answers: 0, bytes: 0, tensorBytes: 0 }
  const commits: number[] = []
  let committed = await commitTrace(plan, rules, honest)
  for (let i = 0; i < 3; i++) {
    const [c, ms] = await timed(() => commitTrace(plan, rules, honest))
    committed = c
    commits.push(ms)
  }
  const a = metered(localParty(plan, committed, honest), meter)
  const b = metered(localParty(plan, await commitTrace(plan, rules, liar), liar), meter)
  const [settled, settleMs] = await timed(async () => {
    const divergence = await bisect({ plan, rules, a, b })
    return { divergence, s: await referee({ plan, rules, divergence, a, b, jobInputs: inputs, run: ortRun }) }
  })
  const plain = await runs(plan.model.bytes, inputs, 'all')
  return {
    model,
    rule: rule[0],
    nodes: plan.leaves.length,
    liarAt,
    found: settled.divergence.position,
    rounds: settled.divergence.rounds,
    refereeRounds: settled.s.rounds,
    verdict: settled.s.verdict,
    replicaBytes: tensorsByteLength(inputs) + tensorsByteLength(plain.out),
    replicaMs: plain.ms,
    disputeBytes: meter.bytes,
    traceRunMs: trace.ms,
    commitMs: median(commits),
    settleMs,
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
    '| model | rule | nodes | liar at / found | rounds (bisect + referee) | log2 N + 2 | third replica: bytes, ms | dispute bytes | per side: traced run, commit ms | settle ms | dispute work, on demand / kept traces (ms) | kept < replica | traced job extra ms |'
  const sep = `|${' --- |'.repeat(13)}`
  const body = rows.map(
    (r) =>
      `| ${r.model} | ${r.rule} | ${r.nodes} | ${r.liarAt} / ${r.found} | ${r.rounds} + ${r.refereeRounds} | ${(Math.log2(r.nodes) + 2).toFixed(1)} | ${r.replicaBytes}, ${r.replicaMs.toFixed(1)} | ${r.disputeBytes} | ${r.traceRunMs.toFixed(1)}, ${r.commitMs.toFixed(1)} | ${r.settleMs.toFixed(1)} | ${onDemandMs(r).toFixed(0)} / ${keptMs(r).toFixed(0)} | ${keptMs(r) < r.replicaMs ? 'yes' : 'no'} | ${(r.traceRunMs - r.replicaMs).toFixed(1)} |`,
  )
  return `## 8. Disputes against a third replica (Node, one thread; a liar at the middle node)\n\n${[head, sep, ...body].join('\n')}\n\nOn demand, both sides rerun their traces (graph optimisation disabled) and commit; with kept traces (the requester asked for traced jobs, JobBody.trace) each side only commits, and every traced job pays its traced run in place of the plain one (the last column).`
}
