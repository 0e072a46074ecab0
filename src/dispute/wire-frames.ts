/**
 * The dispute protocol's frames (`/peer-compute/dispute/2.0.0`): their limits, the contributor's
 * signed commitment, and the shape checks of questions and answers. The requester's side is wire.ts,
 * the contributor's serve.ts.
 */
import type { PrivateKey } from '@libp2p/interface'
import { CID } from 'multiformats/cid'
import type { Frame } from '../net/frame.ts'
import { MalformedFrameError, PartyRefusedError } from '../shared/errors.ts'
import { DTYPES, type NamedTensors } from '../shared/tensor.ts'
import { decodeTensors, encodeTensors, MAX_NAME_LENGTH } from '../shared/tensor-codec.ts'
import type { CompareRule } from '../trust/policy.ts'
import { signRecord, verifyRecord } from '../trust/signed.ts'
import type { ChunkHashes } from './chunks.ts'
import type { LeafAnswer } from './commit.ts'
import { HASH_BYTES } from './hash.ts'

export const COMMITMENT_KIND = 'peer-compute/dispute-commitment'
export const COMMITMENT_DOMAIN = 'peer-compute/dispute-commitment/1'

const KiB = 1024
const MiB = 1024 * KiB
/** Frame limits in bytes (body, after the varint). */
export const DISPUTE_LIMITS = {
  /** `commit`: the job's inputs, as a job frame's. */
  commit: 16 * MiB,
  /** Every other question (64 indices and a 128-character name fit). */
  question: 1 * KiB,
  error: 4 * KiB,
  reason: 512,
  commitment: 4 * KiB,
  children: 256,
  /** A leaf: its outputs' hashes and two proofs (64 outputs, 64 levels at most). */
  leaf: 64 * KiB,
  /** One tensor's chunk hashes: 4 Mi elements make 4096 chunks, three 32-byte hashes each. */
  chunkHashes: 1 * MiB,
  /** A leaf's outputs (default; remoteParty's `maxOutputBytes`). */
  outputs: 16 * MiB,
  /** Chunks asked for in one question (a search's round may ask several). */
  indices: 64,
  /** One chunk: 1024 values of at most 8 bytes. */
  chunk: 8 * KiB,
  /** Outputs of one leaf, hashes on a proof path. */
  list: 64,
} as const

export type DisputeErrorCode =
  | 'bad-request'
  | 'no-commitment'
  | 'expired'
  | 'busy'
  | 'too-large'
  | 'unknown-model'
  | 'refused'
  | 'internal'
export const DISPUTE_ERROR_CODES: readonly DisputeErrorCode[] = [
  'bad-request',
  'no-commitment',
  'expired',
  'busy',
  'too-large',
  'unknown-model',
  'refused',
  'internal',
]

/** What a contributor signs: its trace of `job` (model, inputs) has this root over `leaves` leaves. */
export interface CommitmentBody {
  kind: typeof COMMITMENT_KIND
  v: 1
  job: CID
  model: CID
  input: CID
  root: Uint8Array
  leaves: number
}
export interface SignedCommitment {
  body: CommitmentBody
  sig: Uint8Array
}

/** The questions, as the server reads them. */
export type Question =
  /** `cuts`: commit to cuts (answered `ready`), not to a tree over leaves (answered `commitment`). */
  | { t: 'commit'; job: CID; model: CID; inputs: NamedTensors; compare: CompareRule; cuts: boolean }
  | { t: 'children'; from: number; to: number }
  | { t: 'leaf' | 'outputs'; p: number }
  | { t: 'chunkHashes'; p: number; name: string }
  | { t: 'chunks'; p: number; name: string; indices: number[] }
  | CutQuestion

/** The questions about a cuts-mode commitment (cut-commit.ts's CutCommitter answers them). */
export type CutQuestion =
  | { t: 'cut'; p: number }
  | { t: 'tensorHashes' | 'tensor'; name: string }
  | { t: 'tensorChunks'; name: string; indices: number[] }

const CUT_QUESTIONS: readonly string[] = ['cut', 'tensorHashes', 'tensorChunks', 'tensor']
export const isCutQuestion = (q: Question): q is CutQuestion => CUT_QUESTIONS.includes(q.t)

export const malformed = (what: string): never => {
  throw new MalformedFrameError(`dispute frame: ${what}`)
}

const isMap = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x) && !ArrayBuffer.isView(x) && !CID.asCID(x)

/** `x` as a map with every key of `required` and no key outside `required` and `optional`. */
export function fields(
  x: unknown,
  what: string,
  required: string[],
  optional: string[] = [],
): Record<string, unknown> {
  if (!isMap(x)) return malformed(`${what} must be a map`)
  const keys = Object.keys(x)
  if (!required.every((k) => k in x) || !keys.every((k) => required.includes(k) || optional.includes(k)))
    malformed(
      `${what} must have ${required.join(', ')}${optional.length ? ` (and ${optional.join(', ')})` : ''}`,
    )
  return x
}

export const uint = (x: unknown, what: string, max = Number.MAX_SAFE_INTEGER, min = 0): number =>
  Number.isSafeInteger(x) && (x as number) >= min && (x as number) <= max
    ? (x as number)
    : malformed(`${what} must be an integer in ${min}..${max}`)
export const name = (x: unknown, what: string): string =>
  typeof x === 'string' && x.length > 0 && x.length <= MAX_NAME_LENGTH
    ? x
    : malformed(`${what} must be a name of 1..${MAX_NAME_LENGTH} characters`)
export const bytes = (x: unknown, what: string, max: number): Uint8Array =>
  x instanceof Uint8Array && x.byteLength <= max ? x : malformed(`${what} must be at most ${max} bytes`)
export const list = <T>(x: unknown, what: string, max: number, item: (y: unknown, w: string) => T): T[] =>
  Array.isArray(x) && x.length <= max
    ? x.map((y, i) => item(y, `${what}[${i}]`))
    : malformed(`${what} must be a list of at most ${max}`)
const cid = (x: unknown, what: string): CID => CID.asCID(x) ?? malformed(`${what} must be a CID`)
export const hash = (x: unknown, what: string): Uint8Array =>
  x instanceof Uint8Array && x.byteLength === HASH_BYTES
    ? x
    : malformed(`${what} must be ${HASH_BYTES} bytes`)

/** A compare rule from the wire, bounded as checkPolicy bounds a policy's. */
export function parseCompare(x: unknown): CompareRule {
  const kind = isMap(x) ? x.kind : undefined
  const tol = (y: unknown, what: string) => {
    const m = fields(y, what, ['atol', 'rtol'])
    const ok = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v >= 0
    return ok(m.atol) && ok(m.rtol) ? { atol: m.atol as number, rtol: m.rtol as number } : malformed(what)
  }
  const outputs = (y: unknown) => list(y, 'compare.outputs', DISPUTE_LIMITS.list, name)
  if (kind === 'exact') return fields(x, 'compare', ['kind']) && { kind }
  if (kind === 'tolerance') {
    const m = fields(x, 'compare', ['kind', 'atol', 'rtol'], ['perOutput'])
    const rule: CompareRule = { kind, ...tol({ atol: m.atol, rtol: m.rtol }, 'compare') }
    if (m.perOutput !== undefined) {
      const per = isMap(m.perOutput)
        ? Object.entries(m.perOutput)
        : malformed('compare.perOutput must be a map')
      if (per.length > DISPUTE_LIMITS.list) malformed('compare.perOutput has too many outputs')
      rule.perOutput = Object.fromEntries(per.map(([k, v]) => [name(k, 'an output'), tol(v, k)]))
    }
    return rule
  }
  if (kind === 'argmax' || kind === 'topk') {
    const m = fields(x, 'compare', kind === 'topk' ? ['kind', 'k'] : ['kind'], ['outputs'])
    const rule: CompareRule =
      kind === 'topk'
        ? { kind, k: uint(m.k, 'compare.k', 1000) || malformed('compare.k must be ≥ 1') }
        : { kind }
    if (m.outputs !== undefined) rule.outputs = outputs(m.outputs)
    return rule
  }
  return malformed('compare.kind is unknown')
}

/** Chunk indices asked at once: 1..DISPUTE_LIMITS.indices of them. */
const indicesOf = (x: unknown, what: string): number[] => {
  const indices = list(x, what, DISPUTE_LIMITS.indices, (i, w) => uint(i, w))
  return indices.length ? indices : malformed(`${what} is empty`)
}

/** Shape-checks a question; throws MalformedFrameError (answered with `bad-request`). */
export function parseQuestion(f: Frame): Question {
  const p = (m: Record<string, unknown>) => uint(m.p, `${f.t}.p`)
  switch (f.t) {
    case 'commit': {
      const m = fields(f, 'commit', ['t', 'job', 'model', 'inputs', 'compare'], ['cuts'])
      if (m.cuts !== undefined && m.cuts !== true) malformed('commit.cuts must be true or absent')
      return {
        t: 'commit',
        job: cid(m.job, 'commit.job'),
        model: cid(m.model, 'commit.model'),
        inputs: decodeTensors(m.inputs),
        compare: parseCompare(m.compare),
        cuts: m.cuts === true,
      }
    }
    case 'cut':
      return { t: 'cut', p: uint(fields(f, 'cut', ['t', 'p']).p, 'cut.p', Number.MAX_SAFE_INTEGER, -1) }
    case 'tensorHashes':
    case 'tensor':
      return { t: f.t, name: name(fields(f, f.t, ['t', 'name']).name, `${f.t}.name`) }
    case 'tensorChunks': {
      const m = fields(f, 'tensorChunks', ['t', 'name', 'indices'])
      return {
        t: 'tensorChunks',
        name: name(m.name, 'tensorChunks.name'),
        indices: indicesOf(m.indices, 'tensorChunks.indices'),
      }
    }
    case 'children': {
      const m = fields(f, 'children', ['t', 'from', 'to'])
      return { t: 'children', from: uint(m.from, 'children.from'), to: uint(m.to, 'children.to') }
    }
    case 'leaf':
    case 'outputs':
      return { t: f.t, p: p(fields(f, f.t, ['t', 'p'])) }
    case 'chunkHashes': {
      const m = fields(f, 'chunkHashes', ['t', 'p', 'name'])
      return { t: 'chunkHashes', p: p(m), name: name(m.name, 'chunkHashes.name') }
    }
    case 'chunks': {
      const m = fields(f, 'chunks', ['t', 'p', 'name', 'indices'])
      const indices = indicesOf(m.indices, 'chunks.indices')
      return { t: 'chunks', p: p(m), name: name(m.name, 'chunks.name'), indices }
    }
    default:
      return malformed(`unknown question '${String(f.t).slice(0, 32)}'`)
  }
}

/** Signs a commitment with the contributor's key. */
export async function signCommitment(
  body: Omit<CommitmentBody, 'kind' | 'v'>,
  key: PrivateKey,
): Promise<SignedCommitment> {
  const { job, model, input, root, leaves } = body
  const full: CommitmentBody = { kind: COMMITMENT_KIND, v: 1, job, model, input, root, leaves }
  return { body: full, sig: await signRecord(COMMITMENT_DOMAIN, full, key) }
}

export interface CommitmentExpectations {
  /** The contributor's peer id: the signer. */
  worker: string
  job: CID
  model: CID
  input: CID
}

/** Checks an untrusted signed commitment's shape, its signature and the job it names. */
export async function verifyCommitment(
  x: unknown,
  expect: CommitmentExpectations,
): Promise<SignedCommitment> {
  const s = fields(x, 'signed', ['body', 'sig'])
  const b = fields(s.body, 'signed.body', ['kind', 'v', 'job', 'model', 'input', 'root', 'leaves'])
  if (b.kind !== COMMITMENT_KIND || b.v !== 1) malformed('signed.body is not a dispute commitment')
  const body: CommitmentBody = {
    kind: COMMITMENT_KIND,
    v: 1,
    job: cid(b.job, 'signed.body.job'),
    model: cid(b.model, 'signed.body.model'),
    input: cid(b.input, 'signed.body.input'),
    root: hash(b.root, 'signed.body.root'),
    leaves: uint(b.leaves, 'signed.body.leaves'),
  }
  const sig = bytes(s.sig, 'signed.sig', 128)
  await verifyRecord(COMMITMENT_DOMAIN, body, sig, expect.worker)
  for (const k of ['job', 'model', 'input'] as const)
    if (!body[k].equals(expect[k])) malformed(`the commitment names ${k} ${body[k]}, not ${expect[k]}`)
  return { body, sig }
}

// --- answers: what the server sends, and how the requester reads each ---

/** The answer frame to a question; `undefined` fields are left out (dag-cbor has none). */
export function answerFrame(t: Question['t'], value: unknown): Frame {
  const strip = <T extends object>(o: T) =>
    Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T
  switch (t) {
    case 'children':
      return { t, hashes: value as Uint8Array[] }
    case 'leaf': {
      const a = value as LeafAnswer
      const leaf = { node: a.leaf.node, outputs: a.leaf.outputs.map(strip) }
      return { t, leaf, coarsePath: a.coarsePath, exactPath: a.exactPath }
    }
    case 'outputs':
    case 'tensor':
      return { t, tensors: encodeTensors(value as NamedTensors) }
    case 'chunkHashes':
    case 'tensorHashes':
      return { t, hashes: strip(value as ChunkHashes) }
    case 'chunks':
    case 'tensorChunks':
      return { t, chunks: value as Uint8Array[] }
    case 'cut':
      return { t, signed: value as Uint8Array }
    default:
      return { t: 'commitment', ...(value as object) }
  }
}

export const parseLeaf = (f: Frame): LeafAnswer => {
  const m = fields(f, 'leaf', ['t', 'leaf', 'coarsePath', 'exactPath'])
  const l = fields(m.leaf, 'leaf.leaf', ['node', 'outputs'])
  const output = (o: unknown, w: string) => {
    const x = fields(o, w, ['name', 'exact'], ['coarse', 'shifted'])
    return {
      name: name(x.name, `${w}.name`),
      exact: hash(x.exact, `${w}.exact`),
      ...(x.coarse !== undefined ? { coarse: hash(x.coarse, `${w}.coarse`) } : {}),
      ...(x.shifted !== undefined ? { shifted: hash(x.shifted, `${w}.shifted`) } : {}),
    }
  }
  return {
    leaf: {
      node: uint(l.node, 'leaf.node'),
      outputs: list(l.outputs, 'leaf.outputs', DISPUTE_LIMITS.list, output),
    },
    coarsePath: list(m.coarsePath, 'leaf.coarsePath', DISPUTE_LIMITS.list, hash),
    exactPath: list(m.exactPath, 'leaf.exactPath', DISPUTE_LIMITS.list, hash),
  }
}

export const parseChunkHashes = (f: Frame): ChunkHashes => {
  const h = fields(
    fields(f, 'chunkHashes', ['t', 'hashes']).hashes,
    'hashes',
    ['dtype', 'dims', 'exact'],
    ['coarse', 'shifted'],
  )
  const max = DISPUTE_LIMITS.chunkHashes / 32
  if (!(DTYPES as readonly unknown[]).includes(h.dtype)) malformed('hashes.dtype is unknown')
  const out: ChunkHashes = {
    dtype: h.dtype as ChunkHashes['dtype'],
    dims: list(h.dims, 'hashes.dims', 8, (d, w) => uint(d, w)),
    exact: list(h.exact, 'hashes.exact', max, hash),
  }
  if (h.coarse !== undefined) out.coarse = list(h.coarse, 'hashes.coarse', max, hash)
  if (h.shifted !== undefined) out.shifted = list(h.shifted, 'hashes.shifted', max, hash)
  return out
}

/** A question the server refuses, with the code its `error` frame carries. */
export class Refusal extends Error {
  constructor(
    readonly code: DisputeErrorCode,
    message: string,
  ) {
    super(message)
  }
}

/** Why a question failed, as an error code: the peer's fault or ours. */
function codeOf(err: Error): DisputeErrorCode {
  if (err instanceof Refusal) return err.code
  const peers = ['MalformedFrameError', 'FrameTooLargeError', 'InvalidTensorError', 'InvalidOptionError']
  return peers.includes(err.name) ? 'bad-request' : 'internal'
}

/** The `error` frame the server answers a failed question with. */
export function errorFrame(err: Error): Frame {
  const reason = err instanceof Refusal ? err.message : `${err.name}: ${err.message}`
  return { t: 'error', code: codeOf(err), reason: reason.slice(0, DISPUTE_LIMITS.reason) }
}

/** Reads an `error` answer as PartyRefusedError (with its `code`). */
export function refusal(f: Frame): Error {
  const m = fields(f, 'error', ['t', 'code', 'reason'])
  if (!DISPUTE_ERROR_CODES.includes(m.code as DisputeErrorCode)) malformed('error.code is unknown')
  if (typeof m.reason !== 'string' || m.reason.length > DISPUTE_LIMITS.reason)
    malformed(`error.reason must be text of at most ${DISPUTE_LIMITS.reason} characters`)
  return Object.assign(new PartyRefusedError(`${m.code}: ${m.reason}`), { code: m.code as DisputeErrorCode })
}
