/**
 * Bisection: walk two parties' coarse trees down to the first leaf whose outputs truly differ under
 * the rules. Exact disputes take ceil(log2 N) + 2 rounds (commitment, one per level, the leaf); under
 * a tolerance a leaf whose coarse hashes differ is checked chunk by chunk, and one that agrees (a
 * straddle) is passed over. Once straddles show up, several branches advance per round.
 */
import { AbortError, DisputeAnswerError, DisputeProofError, NoDivergenceError } from '../shared/errors.ts'
import type { TensorData } from '../shared/tensor.ts'
import {
  type ChunkHashes,
  checkChunk,
  checkChunkHashes,
  chunkDiff,
  chunksAgree,
  differingChunks,
} from './chunks.ts'
import {
  type Commitment,
  checkLeaf,
  commitmentRoot,
  type DisputePlan,
  type DisputeRules,
  gridsAgree,
  type LeafAnswer,
  leafNode,
  leafOutputs,
  tensorRule,
  toleranceOf,
} from './commit.ts'
import { HASH_BYTES } from './hash.ts'
import { innerHash, nodeKey, sameBytes, split } from './merkle.ts'
import type { DisputeParty } from './party.ts'

export type Side = 'a' | 'b'
export interface Pair<T> {
  a: T
  b: T
}
/** What a failed question throws: a Dispute* name proves that party lied; any other is transport. */
export type PartyError = Error & { party: Side | 'both' }

/** Chunks asked for per leaf and round. */
export const CHUNK_BATCH = 8
/** Most branches advanced in one round once straddles show up. */
const MAX_WIDTH = 64

export interface Divergence {
  /** The first leaf whose outputs differ under the rules. */
  position: number
  /** Its node index. */
  node: number
  rounds: number
  /** Leaves passed over: coarse hashes differed, values agreed. */
  straddles: number
  commitments: Pair<Commitment>
  leaves: Pair<LeafAnswer>
  /** The first chunk found to disagree under a tolerance. */
  disagreement?: { name: string; chunk: number; diff: number }
  /** The search stopped at maxStraddles, on a leaf whose values agree. */
  exhausted?: true
}

export interface BisectOptions {
  plan: DisputePlan
  rules: DisputeRules
  a: DisputeParty
  b: DisputeParty
  /** Roots the parties signed (from their receipts). */
  roots?: Partial<Pair<Uint8Array>>
  /** Straddles to pass over before settling on one (default: no limit). */
  maxStraddles?: number
  signal?: AbortSignal
}

/** `err` marked as `party`'s failure. */
export function blame(err: unknown, party: Side | 'both'): PartyError {
  const e = err instanceof Error ? err : new Error(String(err))
  return Object.assign(e, { party })
}

export type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown }

/** `p`, or AbortError as soon as `signal` aborts. */
async function raced<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return p
  let stop = () => {}
  const abort = new Promise<never>((_, reject) => {
    stop = () => reject(new AbortError('the dispute was cancelled'))
    signal.addEventListener('abort', stop, { once: true })
  })
  try {
    return await Promise.race([p, abort])
  } finally {
    signal.removeEventListener('abort', stop)
  }
}

/** The error to throw for a failed round: a proven lie before a transport failure. */
function roundError<T>(r: Pair<Settled<T>>): PartyError | undefined {
  const failed = (['a', 'b'] as const).filter((side) => !r[side].ok)
  const lies = failed.filter((side) => isDisputeError((r[side] as { error: unknown }).error))
  const blamed = lies.length ? lies : failed
  if (!blamed.length) return undefined
  return blame((r[blamed[0]!] as { error: unknown }).error, blamed.length === 2 ? 'both' : blamed[0]!)
}

/** Errors that prove a party lied, rather than a transport failure. */
export const isDisputeError = (err: unknown): boolean => /^Dispute/.test((err as Error)?.name ?? '')

/** Asks both parties in parallel, one round at a time. */
export function asker<P = DisputeParty>(a: P, b: P, signal?: AbortSignal) {
  const state = {
    rounds: 0,
    /** Runs `work` on both sides as one round; failures are returned, not thrown. */
    async settle<T>(work: (party: P, side: Side) => Promise<T>): Promise<Pair<Settled<T>>> {
      if (signal?.aborted) throw new AbortError('the dispute was cancelled')
      state.rounds++
      const [ra, rb] = await raced(Promise.allSettled([work(a, 'a'), work(b, 'b')]), signal)
      const settled = (r: PromiseSettledResult<T>): Settled<T> =>
        r.status === 'fulfilled' ? { ok: true, value: r.value } : { ok: false, error: r.reason }
      return { a: settled(ra), b: settled(rb) }
    },
    /** Like settle, but throws a failure, blamed on its side (or both). */
    async round<T>(work: (party: P, side: Side) => Promise<T>): Promise<Pair<T>> {
      const r = await state.settle(work)
      const err = roundError(r)
      if (err) throw err
      return { a: (r.a as { value: T }).value, b: (r.b as { value: T }).value }
    },
  }
  return state
}

const isHash = (h: unknown): h is Uint8Array => h instanceof Uint8Array && h.byteLength === HASH_BYTES

/** Throws DisputeAnswerError unless `ok`. */
export function checkAnswer(ok: boolean, what: string): void {
  if (!ok) throw new DisputeAnswerError(`malformed answer: ${what}`)
}

/** Checks a commitment's shape, its root, and the root the party signed. */
export async function checkCommitment(
  c: Commitment,
  leaves: number,
  signed?: Uint8Array,
): Promise<Commitment> {
  checkAnswer(isHash(c?.root) && isHash(c.coarse) && isHash(c.exact) && c.leaves === leaves, 'commitment')
  if (!sameBytes(await commitmentRoot(c.coarse, c.exact, c.leaves), c.root))
    throw new DisputeProofError('the commitment does not hash to its root')
  if (signed && !sameBytes(signed, c.root))
    throw new DisputeProofError('the commitment is not the one signed')
  return c
}

export const key = nodeKey

/** Chunk hashes of a leaf's outputs, by name. */
type Hashes = Record<string, ChunkHashes>
/** Work left in the search, ordered by the first leaf it covers. */
type Item =
  | { kind: 'node'; from: number; to: number }
  | { kind: 'leaf'; from: number }
  | { kind: 'hashes'; from: number; leaves: Pair<LeafAnswer>; names: string[] }
  | { kind: 'check'; from: number; leaves: Pair<LeafAnswer>; hashes: Pair<Hashes>; pending: Chunk[] }
  | { kind: 'diverged'; from: number; leaves: Pair<LeafAnswer>; disagreement?: Divergence['disagreement'] }
interface Chunk {
  name: string
  index: number
}
/** A leaf whose hashes differed but whose values agree. */
interface Straddle {
  straddle: { from: number; leaves: Pair<LeafAnswer> }
}
type Outcome = Item[] | Straddle

interface Search {
  plan: DisputePlan
  rules: DisputeRules
  commitments: Pair<Commitment>
  /** Coarse tree hashes each party has shown, by node key. */
  known: Pair<Map<string, Uint8Array>>
  /** Ask for chunk hashes with each leaf (one round less), until straddles show up (bytes). */
  eager: boolean
}

const itemFor = (from: number, to: number): Item =>
  to - from === 1 ? { kind: 'leaf', from } : { kind: 'node', from, to }
const tolerance = (s: Search, name: string) => toleranceOf(tensorRule(s.plan, s.rules, name))
const outputOf = (leaf: LeafAnswer, name: string) => leaf.leaf.outputs.find((o) => o.name === name)!

/** Checks chunk hashes against the hashes the leaf commits to. */
async function checkHashes(s: Search, hashes: Hashes, leaf: LeafAnswer): Promise<Hashes> {
  for (const [name, h] of Object.entries(hashes))
    await checkChunkHashes(h, outputOf(leaf, name), tolerance(s, name))
  return hashes
}

/** Chunk hashes of outputs `names` of leaf `position`, by name. */
async function askHashes(party: DisputeParty, position: number, names: string[]): Promise<Hashes> {
  const got = await Promise.all(names.map((name) => party.chunkHashes(position, name)))
  return Object.fromEntries(names.map((name, i) => [name, got[i]!]))
}

/** One party's answer to an item's question this round, checked against what it committed to. */
async function askItem(s: Search, item: Item, party: DisputeParty, side: Side): Promise<unknown> {
  if (item.kind === 'node') {
    const kids = await party.children(item.from, item.to)
    checkAnswer(Array.isArray(kids) && kids.length === 2 && kids.every(isHash), 'children')
    if (!sameBytes(await innerHash(kids[0], kids[1]), s.known[side].get(key(item.from, item.to))))
      throw new DisputeProofError(`the children of [${item.from}, ${item.to}) do not hash to it`)
    return kids
  }
  if (item.kind === 'leaf') {
    const names = s.eager ? leafOutputs(leafNode(s.plan, item.from)).filter((o) => tolerance(s, o)) : []
    const [leaf, hashes] = await Promise.all([party.leaf(item.from), askHashes(party, item.from, names)])
    await checkLeaf(s.plan, s.rules, s.commitments[side], item.from, leaf)
    return { leaf, hashes: await checkHashes(s, hashes, leaf) }
  }
  if (item.kind === 'hashes')
    return checkHashes(s, await askHashes(party, item.from, item.names), item.leaves[side])
  if (item.kind === 'check') return askChunks(s, item, party, side)
  return undefined
}

/** The next CHUNK_BATCH chunks of a check, each checked against its hashes. */
async function askChunks(s: Search, item: Item & { kind: 'check' }, party: DisputeParty, side: Side) {
  const batch = item.pending.slice(0, CHUNK_BATCH)
  const byName = new Map<string, Chunk[]>()
  for (const c of batch) byName.set(c.name, [...(byName.get(c.name) ?? []), c])
  const values: TensorData[] = []
  const ask = async ([name, wanted]: [string, Chunk[]]) => {
    const got = await party.chunks(
      item.from,
      name,
      wanted.map((c) => c.index),
    )
    checkAnswer(Array.isArray(got) && got.length === wanted.length, 'chunks')
    await Promise.all(
      wanted.map(async (c, k) => {
        const hashes = item.hashes[side][name]!
        values[batch.indexOf(c)] = await checkChunk(hashes, c.index, got[k]!, tolerance(s, name))
      }),
    )
  }
  await Promise.all([...byName].map(ask))
  return values
}

/**
 * Two leaves whose coarse tree hashes differ: diverged (an exact or top-k output differs, or a
 * shape), agreed on the shifted grid (a straddle), or chunks to compare (after their hashes).
 */
function compareLeaves(s: Search, from: number, leaves: Pair<LeafAnswer>, hashes: Pair<Hashes>): Outcome {
  const names: string[] = []
  for (const [i, oa] of leaves.a.leaf.outputs.entries()) {
    if (gridsAgree(oa, leaves.b.leaf.outputs[i]!)) continue
    if (!tolerance(s, oa.name)) return [{ kind: 'diverged', from, leaves }]
    names.push(oa.name)
  }
  if (!names.length) return { straddle: { from, leaves } }
  if (names.some((name) => !hashes.a[name])) return [{ kind: 'hashes', from, leaves, names }]
  const pending: Chunk[] = []
  for (const name of names) {
    const [ha, hb] = [hashes.a[name]!, hashes.b[name]!]
    if (ha.dtype !== hb.dtype || ha.dims.join() !== hb.dims.join())
      return [{ kind: 'diverged', from, leaves }]
    for (const index of differingChunks(ha, hb)) pending.push({ name, index })
  }
  return pending.length ? [{ kind: 'check', from, leaves, hashes, pending }] : { straddle: { from, leaves } }
}

/** Compares the chunks a check fetched: diverged at the first that disagrees. */
function compareChunks(s: Search, item: Item & { kind: 'check' }, values: Pair<TensorData[]>): Outcome {
  const batch = item.pending.slice(0, CHUNK_BATCH)
  for (const [i, c] of batch.entries()) {
    if (chunksAgree(values.a[i]!, values.b[i]!, tolerance(s, c.name)!)) continue
    const disagreement = { name: c.name, chunk: c.index, diff: chunkDiff(values.a[i]!, values.b[i]!) }
    return [{ kind: 'diverged', from: item.from, leaves: item.leaves, disagreement }]
  }
  const pending = item.pending.slice(CHUNK_BATCH)
  return pending.length ? [{ ...item, pending }] : { straddle: item }
}

/** What an item leads to once both parties answered its question. */
function advance(s: Search, item: Item, answers: Pair<unknown>): Outcome {
  if (item.kind === 'node') {
    const mid = item.from + split(item.to - item.from)
    const kids = answers as Pair<[Uint8Array, Uint8Array]>
    const ranges: [number, number][] = [
      [item.from, mid],
      [mid, item.to],
    ]
    return ranges.flatMap(([from, to], i) => {
      s.known.a.set(key(from, to), kids.a[i]!)
      s.known.b.set(key(from, to), kids.b[i]!)
      return sameBytes(kids.a[i], kids.b[i]) ? [] : [itemFor(from, to)]
    })
  }
  if (item.kind === 'leaf') {
    const found = answers as Pair<{ leaf: LeafAnswer; hashes: Hashes }>
    const leaves = { a: found.a.leaf, b: found.b.leaf }
    return compareLeaves(s, item.from, leaves, { a: found.a.hashes, b: found.b.hashes })
  }
  if (item.kind === 'hashes') return compareLeaves(s, item.from, item.leaves, answers as Pair<Hashes>)
  if (item.kind === 'check') return compareChunks(s, item, answers as Pair<TensorData[]>)
  return [item]
}

export async function bisect(opts: BisectOptions): Promise<Divergence> {
  const { plan, rules } = opts
  const n = plan.leaves.length
  const ask = asker(opts.a, opts.b, opts.signal)
  const commitments = await ask.round((p, side) =>
    p.commitment().then((c) => checkCommitment(c, n, opts.roots?.[side])),
  )
  if (sameBytes(commitments.a.coarse, commitments.b.coarse))
    throw new NoDivergenceError('the commitments agree under the rules')
  const known = {
    a: new Map([[key(0, n), commitments.a.coarse]]),
    b: new Map([[key(0, n), commitments.b.coarse]]),
  }
  const s: Search = { plan, rules, commitments, known, eager: true }
  const maxStraddles = opts.maxStraddles ?? Number.POSITIVE_INFINITY
  const done = (at: { from: number; leaves: Pair<LeafAnswer> }, straddles: number, exhausted = false) => {
    const d: Divergence = {
      position: at.from,
      node: plan.leaves[at.from]!,
      rounds: ask.rounds,
      straddles,
      commitments,
      leaves: at.leaves,
    }
    const disagreement = (at as { disagreement?: Divergence['disagreement'] }).disagreement
    if (disagreement) d.disagreement = disagreement
    if (exhausted) d.exhausted = true
    return d
  }
  let items: Item[] = [itemFor(0, n)]
  let straddles = 0
  for (;;) {
    const head = items[0]
    if (!head) throw new NoDivergenceError('every leaf whose hashes differ agrees under the rules')
    if (head.kind === 'diverged') return done(head, straddles)
    const width = straddles ? Math.min(MAX_WIDTH, 2 ** straddles) : 1
    const batch = items.slice(0, width).filter((i) => i.kind !== 'diverged')
    const answers = await ask.round((party, side) =>
      Promise.all(batch.map((i) => askItem(s, i, party, side))),
    )
    const next = items.filter((i) => !(batch as Item[]).includes(i))
    for (const [k, item] of batch.entries()) {
      const r = advance(s, item, { a: answers.a[k], b: answers.b[k] })
      if (Array.isArray(r)) next.push(...r)
      else if (++straddles >= maxStraddles) return done(r.straddle, straddles, true)
      else s.eager = false
    }
    items = next.sort((x, y) => x.from - y.from)
  }
}
