/**
 * 8. Disputes against a third replica (Node, onnxruntime-node, one thread; in-process parties, metered):
 * a liar lies at the middle node of each model with a trace that agrees with its lie. A third
 * replica costs one run of the plain model and moves its input and output; a dispute costs both
 * sides' traced runs and commitments, the rounds of bisection, the referee's one-node run, and the
 * answers' bytes.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { bisect } from '../src/dispute/bisect.ts'
import { commitTrace, type DisputePlan, disputePlan, disputeRules } from '../src/dispute/commit.ts'
import { withIntermediateOutputs } from '../src/dispute/onnx-graph.ts'
import { localParty, type Meter, metered } from '../src/dispute/party.ts'
import { referee } from '../src/dispute/referee.ts'
import { type NamedTensors, tensorsByteLength } from '../src/shared/tensor.ts'
import type { CompareRule } from '../src/trust/policy.ts'
import { lyingTrace, shifted } from '../test/helpers/liar-trace.ts'
import { floats, ortRun } from '../test/helpers/ort-run.ts'

export interface DisputeRow {
  model: string
  rule: string
  nodes: number
  liarAt: number
  found: number
  rounds: number
  refereeRounds: number
  verdict: string
  /** What a third replica moves (input + output) and costs (one plain run, 'all'), median of 3. */
  replicaBytes: number
  replicaMs: number
  /** What the dispute moves (answers) and costs: one side's traced run + commit, and bisect + referee. */
  disputeBytes: number
  traceMs: number
  settleMs: number
}

const MODELS = resolve(import.meta.dirname, '../public/models')
const CASES: { model: string; file: string; inputs: () => NamedTensors }[] = [
  { model: 'mlp-s', file: 'mlp-s.onnx', inputs: () => ({ x: floats([64, 256], 1) }) },
  { model: 'mlp-m', file: 'mlp-m.onnx', inputs: () => ({ x: floats([160, 512], 2) }) },
  { model: 'mlp-l', file: 'mlp-l.onnx', inputs: () => ({ x: floats([448, 1024], 3) }) },
  {
    model: 'ppocr-v4-det 1×3×64×256',
    file: 'vendor/ch_PP-OCRv4_det_infer.onnx',
    inputs: () => ({ x: floats([1, 3, 64, 256], 4) }),
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

async function one(plan: DisputePlan, rule: [string, CompareRule], inputs: NamedTensors, model: string) {
  const rules = disputeRules(rule[1])
  const liarAt = plan.leaves.length >> 1
  const [honest, traceRun] = await timed(() => ortRun(withIntermediateOutputs(plan.model), inputs))
  const liar = await lyingTrace(plan, honest, inputs, liarAt, shifted(0.5))
  const meter: Meter = { answers: 0, bytes: 0, tensorBytes: 0 }
  const [committed, commitMs] = await timed(() => commitTrace(plan, rules, honest))
  const a = metered(localParty(plan, committed, honest), meter)
  const b = metered(localParty(plan, await commitTrace(plan, rules, liar), liar), meter)
  const [settled, settleMs] = await timed(async () => {
    const divergence = await bisect({ plan, rules, a, b })
    return { divergence, s: await referee({ plan, rules, divergence, a, b, jobInputs: inputs, run: ortRun }) }
  })
  const runs: number[] = []
  let outputs: NamedTensors = {}
  for (let i = 0; i < 3; i++) {
    const [out, ms] = await timed(() => ortRun(plan.model.bytes, inputs, 'all'))
    runs.push(ms)
    outputs = out
  }
  return {
    model,
    rule: rule[0],
    nodes: plan.leaves.length,
    liarAt,
    found: settled.divergence.position,
    rounds: settled.divergence.rounds,
    refereeRounds: settled.s.rounds,
    verdict: settled.s.verdict,
    replicaBytes: tensorsByteLength(inputs) + tensorsByteLength(outputs),
    replicaMs: median(runs),
    disputeBytes: meter.bytes,
    traceMs: traceRun + commitMs,
    settleMs,
  } satisfies DisputeRow
}

export async function disputeBench(quick: boolean, log: (s: string) => void): Promise<DisputeRow[]> {
  const rows: DisputeRow[] = []
  for (const c of quick ? CASES.slice(0, 1) : CASES) {
    const plan = disputePlan(new Uint8Array(readFileSync(resolve(MODELS, c.file))))
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
    '| model | rule | nodes | liar at / found | rounds (bisect + referee) | log2 N + 2 | third replica: bytes, ms | dispute: bytes, trace + commit ms per side, settle ms | verdict |'
  const sep = `|${' --- |'.repeat(9)}`
  const body = rows.map(
    (r) =>
      `| ${r.model} | ${r.rule} | ${r.nodes} | ${r.liarAt} / ${r.found} | ${r.rounds} + ${r.refereeRounds} | ${(Math.log2(r.nodes) + 2).toFixed(1)} | ${r.replicaBytes}, ${r.replicaMs.toFixed(1)} | ${r.disputeBytes}, ${r.traceMs.toFixed(0)}, ${r.settleMs.toFixed(1)} | ${r.verdict} |`,
  )
  return `## 8. Disputes against a third replica (Node, one thread; a liar at the middle node)\n\n${[head, sep, ...body].join('\n')}\n\nA dispute's work is both sides' traced runs (graph optimisation disabled) and commitments, then the settle column; a third replica's is one plain run.`
}
