/**
 * Cuts: what a bisection over leaf positions compares instead of every node's outputs.
 * The cut at position p (-1 … N-1) is the tensors live across p: born at a leaf at or before p (graph
 * inputs at -1) and read by a leaf after p or a graph output. Initializers and Constant outputs are
 * the model, never part of a cut. A skip connection sits in every cut it spans, so a lie about it
 * shows in each of them.
 *
 * The search keeps lo (a cut both sides agree on, first -1: the job's inputs) and hi (one they
 * differ on, first N-1: the outputs) and ends when hi = lo + 1. Leaf hi then reads only tensors in
 * cut(lo) and writes its live outputs into cut(hi), so it alone turns agreement into disagreement,
 * whatever the sides said at other positions: no monotonicity is needed.
 *
 *   let s = startSearch(cp.size)
 *   for (let p = nextProbe(s.lo, s.hi); p !== undefined; p = nextProbe(s.lo, s.hi))
 *     s = advance(s, await sidesAgreeOn(cutAt(cp, p)))
 */
import { InvalidOptionError } from '../shared/errors.ts'
import { type DisputePlan, leafNode } from './commit.ts'
import type { NodeInput } from './onnx-graph.ts'

/** A tensor's life in leaf positions: it is live across p iff born ≤ p < end. */
export interface Life {
  name: string
  /** The producing leaf's position; -1 for a graph input. */
  born: number
  /** The last reading leaf's position; N (past every leaf) for a graph output. */
  end: number
}

export interface CutPlan {
  /** Number of leaves, N: cuts exist at -1 … N-1. */
  size: number
  /** Every tensor live across some position, by birth then name (code units, not locale). */
  lives: readonly Life[]
}

/** Computed tensors a leaf reads: from graph inputs or other leaves, implicit (subgraph) reads included. */
const computed = (i: NodeInput) => i.source.kind === 'input' || i.source.kind === 'node'

/** Names leaf `position` reads that a cut can hold, once each, in input order. */
export function leafReads(plan: DisputePlan, position: number): string[] {
  const names = leafNode(plan, position).inputs.filter(computed)
  return [...new Set(names.map((i) => i.name))]
}

const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0)

/** Liveness of every computed tensor: linear in nodes and edges (plus sorting each leaf's few outputs). */
export function cutPlan(plan: DisputePlan): CutPlan {
  const m = plan.model
  const n = plan.leaves.length
  const end = new Map<string, number>()
  // Positions rise, so the last write is the last read.
  for (let p = 0; p < n; p++) for (const i of leafNode(plan, p).inputs) if (computed(i)) end.set(i.name, p)
  // Only tensors a cut can hold: not initializers, not Constant outputs.
  const born = new Map<string, number>(m.inputs.map((name) => [name, -1]))
  for (let p = 0; p < n; p++) for (const o of leafNode(plan, p).outputs) if (o) born.set(o, p)
  for (const o of m.outputs) if (born.has(o)) end.set(o, n)
  const lives: Life[] = []
  const add = (names: string[], b: number) => {
    for (const name of [...names].sort(byName)) {
      const e = end.get(name)
      if (born.get(name) === b && e !== undefined && e > b) lives.push({ name, born: b, end: e })
    }
  }
  add([...new Set(m.inputs)], -1)
  for (let p = 0; p < n; p++) add(leafNode(plan, p).outputs.filter(Boolean), p)
  return { size: n, lives }
}

/** Names of the tensors live across `p`, by birth then name. */
export function cutAt(cp: CutPlan, p: number): string[] {
  if (!Number.isInteger(p) || p < -1 || p >= cp.size)
    throw new InvalidOptionError(`no cut at ${p}: cuts run from -1 to ${cp.size - 1}`)
  return cp.lives.filter((l) => l.born <= p && p < l.end).map((l) => l.name)
}

/** A binary search over cuts: the sides agree on cut(lo) and differ on cut(hi). */
export interface CutSearch {
  lo: number
  hi: number
  /** Cuts asked so far (the two ends are known before the search and not counted). */
  rounds: number
}

/** The search over a plan of `size` leaves: the job's inputs agree, the outputs differ. */
export function startSearch(size: number): CutSearch {
  if (!Number.isInteger(size) || size < 1) throw new InvalidOptionError(`no search over ${size} leaves`)
  return { lo: -1, hi: size - 1, rounds: 0 }
}

/** The position to ask next; undefined once hi = lo + 1 (leaf hi is the one that diverges). */
export function nextProbe(lo: number, hi: number): number | undefined {
  if (!Number.isInteger(lo) || !Number.isInteger(hi) || hi <= lo)
    throw new InvalidOptionError(`no search between ${lo} and ${hi}`)
  return hi === lo + 1 ? undefined : Math.floor((lo + hi) / 2)
}

/** The search after the sides agreed (or not) on the cut at nextProbe. */
export function advance(s: CutSearch, agree: boolean): CutSearch {
  const mid = nextProbe(s.lo, s.hi)
  if (mid === undefined) throw new InvalidOptionError(`the search is over: leaf ${s.hi} diverges`)
  return agree ? { lo: mid, hi: s.hi, rounds: s.rounds + 1 } : { lo: s.lo, hi: mid, rounds: s.rounds + 1 }
}

/** Most rounds a search over `size` leaves takes: ceil(log2 size), as each halves hi - lo. */
export function searchRounds(size: number): number {
  let rounds = 0
  while (2 ** rounds < size) rounds++
  return rounds
}
