/**
 * Signed cuts: a contributor's answer to "what is your cut at position p" (cuts.ts) is one
 * OutputCommitment per tensor live across p, signed, so what it said binds it. Pure functions: not
 * yet on the wire.
 *
 *   const committer = createCutCommitter({ trace, plan, rules, key, job, model, input })
 *   const body = await openCut(await committer.commit(p), { worker, job, model, input, position: p, names, plan, rules })
 *   compareCuts(body, theirs, plan, rules) // 'agree' | 'differ' | { straddle: names }
 */
import * as dagCbor from '@ipld/dag-cbor'
import type { PrivateKey } from '@libp2p/interface'
import { CID } from 'multiformats/cid'
import { copyOf } from '../shared/bytes.ts'
import {
  DisputeAnswerError,
  DisputeProofError,
  InvalidOptionError,
  InvalidTensorError,
} from '../shared/errors.ts'
import type { NamedTensors, Tensor } from '../shared/tensor.ts'
import { signRecord, verifyRecord } from '../trust/signed.ts'
import { type ChunkHashes, chunkCount, chunkOf } from './chunks.ts'
import {
  type DisputePlan,
  type DisputeRules,
  gridsAgree,
  type OutputCommitment,
  tensorCommitment,
  tensorRule,
  toleranceOf,
} from './commit.ts'
import { cutAt, cutPlan } from './cuts.ts'
import { HASH_BYTES, sha256 } from './hash.ts'
import { sameBytes } from './merkle.ts'
import { bytes, DISPUTE_LIMITS, fields, hash, list } from './wire-frames.ts'

export const CUT_DOMAIN = 'peer-compute/dispute-cut/1'
/** Largest signed cut: a leaf answer's limit (about 250 tensors with 128-character names). */
export const MAX_CUT_BYTES = DISPUTE_LIMITS.leaf

/** The job a cut is about. */
export interface CutJob {
  job: CID
  model: CID
  input: CID
}
/** What a contributor signs: its cut at `position`, in cutAt order. */
export interface CutBody extends CutJob {
  v: 1
  /** rulesDigest of the rules it was asked under: a record cannot claim other rules later. */
  rules: Uint8Array
  position: number
  tensors: OutputCommitment[]
}

const digests = new WeakMap<DisputeRules, Promise<Uint8Array>>()
/** SHA-256 of the rules' canonical dag-cbor (undefined fields dropped, as JSON does). */
export function rulesDigest(rules: DisputeRules): Promise<Uint8Array> {
  // An asker checks it on every cut it reads, always against the same rules object.
  let d = digests.get(rules)
  if (!d) {
    d = sha256(dagCbor.encode(JSON.parse(JSON.stringify(rules))))
    digests.set(rules, d)
  }
  return d
}

export interface CutCommitterOptions extends CutJob {
  /** The job's inputs and every leaf's outputs, by name (cut -1 is the inputs). */
  trace: NamedTensors
  plan: DisputePlan
  rules: DisputeRules
  key: PrivateKey
}
export interface CutCommitter {
  /** The signed cut at `position`: dag-cbor `{ body, sig }`. */
  commit(position: number): Promise<Uint8Array>
  /** The chunk hashes of tensor `name`, which its commitment in every cut holding it digests. */
  chunkHashes(name: string): Promise<ChunkHashes>
  /** Chunks of tensor `name`, as little-endian bytes, in the order asked. */
  chunks(name: string, indices: number[]): Promise<Uint8Array[]>
  /** The whole tensor `name`, live across some cut. */
  tensor(name: string): Promise<Tensor>
  /** Tensors hashed so far: each at most once, however many cuts hold it. */
  readonly hashed: number
}

/**
 * A contributor's cuts over its trace. A position off the plan, or a tensor or chunk in no cut,
 * throws InvalidOptionError, a cut tensor the trace lacks InvalidTensorError: the contributor's own
 * faults (or a question about nothing it signed), never a `Dispute*` lie.
 */
export function createCutCommitter(o: CutCommitterOptions): CutCommitter {
  const cp = cutPlan(o.plan)
  const live = new Set(cp.lives.map((l) => l.name))
  // Chunk hashes kept with each commitment: settling a straddle asks for them.
  const memo = new Map<string, Promise<{ output: OutputCommitment; chunks: ChunkHashes }>>()
  let hashed = 0
  const digestOfRules = rulesDigest(o.rules)
  const tensor = (name: string) => {
    if (!live.has(name)) throw new InvalidOptionError(`'${name}' is in no cut`)
    const t = o.trace[name]
    if (!t) throw new InvalidTensorError(`the trace lacks '${name}', live across a cut`)
    return t
  }
  const committed = (name: string) => {
    let c = memo.get(name)
    if (c) return c
    const t = tensor(name)
    hashed++
    c = tensorCommitment(name, t, tensorRule(o.plan, o.rules, name))
    memo.set(name, c)
    return c
  }
  return {
    get hashed() {
      return hashed
    },
    async commit(position) {
      const tensors: OutputCommitment[] = []
      // One tensor at a time, as commitTrace: each holds a batch of cells and digests in flight.
      for (const name of cutAt(cp, position)) tensors.push((await committed(name)).output)
      const rules = await digestOfRules
      const body: CutBody = { v: 1, job: o.job, model: o.model, input: o.input, rules, position, tensors }
      const signed = dagCbor.encode({ body, sig: await signRecord(CUT_DOMAIN, body, o.key) })
      if (signed.byteLength > MAX_CUT_BYTES)
        throw new InvalidOptionError(
          `the cut at ${position} is ${signed.byteLength} bytes, over ${MAX_CUT_BYTES}`,
        )
      return signed
    },
    chunkHashes: async (name) => (await committed(name)).chunks,
    async chunks(name, indices) {
      const t = tensor(name)
      const count = chunkCount(t.dims)
      if (!Array.isArray(indices) || !indices.every((i) => Number.isInteger(i) && i >= 0 && i < count))
        throw new InvalidOptionError(`'${name}' has ${count} chunks`)
      return indices.map((i) => copyOf(chunkOf(t, i))) // each in its own buffer: cheap to send or post
    },
    tensor: async (name) => tensor(name),
  }
}

export interface CutExpectations extends CutJob {
  /** The contributor's peer id: the signer. */
  worker: string
  position: number
  /** cutAt(cutPlan(plan), position). */
  names: string[]
  plan: DisputePlan
  rules: DisputeRules
}

const malformedCut = (what: string): never => {
  throw new DisputeAnswerError(`malformed cut: ${what}`)
}

/** Runs wire-frames shape checks, their MalformedFrameError read as the party's malformed answer. */
function shaped<T>(check: () => T): T {
  try {
    return check()
  } catch (err) {
    if ((err as Error)?.name !== 'MalformedFrameError') throw err
    return malformedCut((err as Error).message)
  }
}

type TensorParser = (x: unknown, w: string) => OutputCommitment

/** One tensor's commitment without the plan: a name, its exact hash, and whichever grid hashes it has. */
function anyTensor(x: unknown, w: string): OutputCommitment {
  const m = fields(x, w, ['name', 'exact'], ['coarse', 'shifted'])
  if (typeof m.name !== 'string' || !m.name) return malformedCut(`${w}.name must be a name`)
  const out: OutputCommitment = { name: m.name, exact: hash(m.exact, `${w}.exact`) }
  if (m.coarse !== undefined) out.coarse = hash(m.coarse, `${w}.coarse`)
  if (m.shifted !== undefined) out.shifted = hash(m.shifted, `${w}.shifted`)
  return out
}

/** One tensor's commitment, with exactly the hashes its rule calls for (as checkLeaf's hashesFit). */
const ruledTensor =
  (plan: DisputePlan, rules: DisputeRules): TensorParser =>
  (x, w) => {
    const out = anyTensor(x, w)
    const kind = tensorRule(plan, rules, out.name).kind
    const grids = kind === 'exact' ? [] : kind === 'topk' ? ['coarse'] : ['coarse', 'shifted']
    fields(x, w, ['name', 'exact', ...grids])
    return out
  }

/** Bounded decode and shape check of a signed cut; DisputeAnswerError for anything malformed. */
function parseCut(signed: Uint8Array, parseTensor: TensorParser) {
  if (!(signed instanceof Uint8Array) || signed.byteLength > MAX_CUT_BYTES)
    return malformedCut(`more than ${MAX_CUT_BYTES} bytes`)
  let x: unknown
  try {
    x = dagCbor.decode(signed)
  } catch (err) {
    return malformedCut(`not dag-cbor (${(err as Error).message})`)
  }
  return shaped(() => {
    const s = fields(x, 'cut', ['body', 'sig'])
    const b = fields(s.body, 'cut.body', ['v', 'job', 'model', 'input', 'rules', 'position', 'tensors'])
    const cid = (k: 'job' | 'model' | 'input') =>
      CID.asCID(b[k]) ?? malformedCut(`cut.body.${k} must be a CID`)
    if (b.v !== 1) malformedCut('cut.body.v must be 1')
    if (!Number.isSafeInteger(b.position) || (b.position as number) < -1)
      malformedCut('cut.body.position must be an integer ≥ -1')
    const tensors = list(b.tensors, 'cut.body.tensors', MAX_CUT_BYTES / HASH_BYTES, parseTensor)
    const body: CutBody = {
      v: 1,
      job: cid('job'),
      model: cid('model'),
      input: cid('input'),
      rules: hash(b.rules, 'cut.body.rules'),
      position: b.position as number,
      tensors,
    }
    return { body, sig: bytes(s.sig, 'cut.sig', 128) }
  })
}

/** A parsed cut's body if `worker` signed it; DisputeProofError if not. */
async function verified({ body, sig }: { body: CutBody; sig: Uint8Array }, worker: string): Promise<CutBody> {
  try {
    await verifyRecord(CUT_DOMAIN, body, sig, worker)
  } catch (err) {
    if ((err as Error)?.name !== 'InvalidSignatureError') throw err
    throw new DisputeProofError(`the cut at ${body.position} is not signed by ${worker}`)
  }
  return body
}

/**
 * The body of a signed cut from `worker`, without the plan: its shape (each tensor a name and
 * its hashes) and signature only; the caller checks its job, position and names. DisputeAnswerError
 * for a malformed cut, DisputeProofError for another signer's.
 */
export const openSignedCut = async (signed: Uint8Array, worker: string): Promise<CutBody> =>
  verified(parseCut(signed, anyTensor), worker)

/** A cut read and checked against the question, its signature not yet verified (verifyCut). */
export interface ReadCut {
  body: CutBody
  sig: Uint8Array
}

/**
 * A cut's shape, job, model, input, position and names checked against `expect`; DisputeAnswerError
 * if any is wrong (the wrong answer to the question, as checkLeaf treats a leaf's node and names).
 * The signature is left to verifyCut, for a caller that needs only some cuts proven.
 */
export const readCut = (signed: Uint8Array, expect: CutExpectations): Promise<ReadCut> =>
  answers(parseCut(signed, ruledTensor(expect.plan, expect.rules)), expect)

async function answers(read: ReadCut, expect: CutExpectations): Promise<ReadCut> {
  const { body } = read
  for (const k of ['job', 'model', 'input'] as const)
    if (!body[k].equals(expect[k]))
      throw new DisputeAnswerError(`the cut names ${k} ${body[k]}, not ${expect[k]}`)
  if (!sameBytes(body.rules, await rulesDigest(expect.rules)))
    throw new DisputeAnswerError('the cut was made under other rules than those asked')
  if (body.position !== expect.position)
    throw new DisputeAnswerError(`a cut at ${body.position} answers the cut at ${expect.position}`)
  const names = body.tensors.map((t) => t.name)
  if (names.length !== expect.names.length || names.some((n, i) => n !== expect.names[i]))
    throw new DisputeAnswerError(`the cut at ${body.position} holds the wrong tensors`)
  return read
}

/** A read cut's body if `worker` signed it; DisputeProofError if not. */
export const verifyCut = (read: ReadCut, worker: string): Promise<CutBody> => verified(read, worker)

/**
 * The body of a signed cut from `expect.worker`, checked. A signature that does not verify throws
 * DisputeProofError; a malformed cut, or one about another job, position or names, DisputeAnswerError.
 */
export async function openCut(signed: Uint8Array, expect: CutExpectations): Promise<CutBody> {
  const read = parseCut(signed, ruledTensor(expect.plan, expect.rules))
  await verified(read, expect.worker)
  return (await answers(read, expect)).body
}

/**
 * Two opened cuts at one position, as compareLeaves treats a leaf's outputs: an exact or top-k
 * tensor whose hash differs differs; a tolerance tensor that differs on both grids is a straddle
 * candidate, settled by its chunks (whose hashes also show a dtype or shape difference).
 */
export function compareCuts(
  a: CutBody,
  b: CutBody,
  plan: DisputePlan,
  rules: DisputeRules,
): 'agree' | 'differ' | { straddle: string[] } {
  const same =
    a.tensors.length === b.tensors.length && a.tensors.every((t, i) => t.name === b.tensors[i]!.name)
  if (a.position !== b.position || !same)
    throw new InvalidOptionError(`cuts at ${a.position} and ${b.position} hold different tensors`)
  const straddle: string[] = []
  for (const [i, ta] of a.tensors.entries()) {
    if (gridsAgree(ta, b.tensors[i]!)) continue
    if (!toleranceOf(tensorRule(plan, rules, ta.name))) return 'differ'
    straddle.push(ta.name)
  }
  return straddle.length ? { straddle } : 'agree'
}
