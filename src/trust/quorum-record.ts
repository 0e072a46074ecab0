/**
 * Portable quorum records: the signed receipts (and outputs) of the replicas that agreed on a job.
 * Anyone can check one offline: signatures, CIDs, distinct workers, agreement, and the quorum. A job
 * settled by dispute holds one member and the dispute (DESIGN.md, Verification).
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { checkCommitment } from '../dispute/bisect.ts'
import { type DisputePlan, disputeRules } from '../dispute/commit.ts'
import { sameBytes } from '../dispute/merkle.ts'
import { DISPUTE_RECORD_KIND, defined, verifyDisputeRecord } from '../dispute/record.ts'
import { checkCutRecordSignatures, verifyCutRecord } from '../dispute/record-cuts.ts'
import type { RunNode } from '../dispute/referee.ts'
import { type SignedCommitment, verifyCommitment } from '../dispute/wire-frames.ts'
import { InvalidDisputeRecordError, InvalidReceiptError, QuorumNotMetError } from '../shared/errors.ts'
import type { NamedTensors } from '../shared/tensor.ts'
import { decodeTensors, type EncodedTensors, encodeTensors, tensorsCid } from '../shared/tensor-codec.ts'
import { outputsAgree } from './compare.ts'
import { BASE_POLICY, type CompareRule, checkPolicy } from './policy.ts'
import { type Receipt, verifyReceipt } from './receipt.ts'

export const QUORUM_RECORD_KIND = 'peer-compute/quorum-record'

export interface QuorumRecord {
  kind: typeof QUORUM_RECORD_KIND
  v: 1
  model: CID
  input: CID
  requester: string
  /** The policy's quorum and comparison rule the members were checked against. */
  quorum: number
  compare: CompareRule
  members: { receipt: Receipt; outputs: EncodedTensors }[]
  /** Settled by dispute: the one member is this side of it, confirmed by the requester's referee. */
  dispute?: QuorumDispute
}

/** A dispute that settled a 1–1 disagreement, with what ties its sides to the workers and the job. */
export interface QuorumDispute {
  /** The dispute record (encodeDisputeRecord). */
  record: Uint8Array
  /** The record's side the member is. */
  side: 'a' | 'b'
  /** Each side's worker, the receipt it signed for its own replica and (v1) its signed commitment. */
  a: DisputeParty
  b: DisputeParty
}
export interface DisputeParty {
  worker: string
  /** A v1 record's side: its signed commitment (a v2 record carries each side's signed cuts). */
  signed?: SignedCommitment
  receipt: Receipt
}

export function buildQuorumRecord(
  members: { receipt: Receipt; outputs: NamedTensors }[],
  quorum: number,
  compare: CompareRule,
  dispute?: QuorumDispute,
): QuorumRecord {
  const first = members[0]
  if (!first) throw new QuorumNotMetError('a quorum record needs at least one member')
  return {
    kind: QUORUM_RECORD_KIND,
    v: 1,
    model: first.receipt.body.model,
    input: first.receipt.body.input,
    requester: first.receipt.body.requester,
    quorum,
    compare,
    members: members.map((m) => ({ receipt: m.receipt, outputs: encodeTensors(m.outputs) })),
    ...(dispute ? { dispute } : {}),
  }
}

export const encodeQuorumRecord = (r: QuorumRecord): Uint8Array => dagCbor.encode(r)

export interface QuorumCheck {
  model: string
  input: string
  requester: string
  quorum: number
  workers: string[]
  outputs: string[]
  dispute?: DisputeCheck
}

export interface DisputeCheck {
  verdict: 'a-invalid' | 'b-invalid' | 'drift'
  /** The worker on the other side (judged invalid, or further off under drift). */
  other: string
  /**
   * 'commitments': signatures and roots only (no model given); 'record': also the record's proofs
   * and judgements against the model; `proven`: the node rerun confirmed both judgements.
   */
  checked: 'commitments' | 'record'
  proven: boolean
}

export interface VerifyQuorumOptions {
  /** The model's dispute plan: without it a dispute is checked down to its signed commitments only. */
  plan?: DisputePlan
  /** Reruns the disputed node (with `plan`): proves the verdict. */
  run?: RunNode
}

/** Verifies a record from bytes; throws a named error saying what is wrong. */
export async function verifyQuorumRecord(
  bytes: Uint8Array,
  minQuorum = 1,
  opts: VerifyQuorumOptions = {},
): Promise<QuorumCheck> {
  let raw: Record<string, unknown>
  try {
    raw = dagCbor.decode(bytes) as Record<string, unknown>
  } catch (err) {
    throw new InvalidReceiptError(`not a dag-cbor quorum record: ${(err as Error).message}`)
  }
  if (raw?.kind !== QUORUM_RECORD_KIND || raw.v !== 1) throw new InvalidReceiptError('not a v1 quorum record')
  const model = CID.asCID(raw.model)
  const input = CID.asCID(raw.input)
  const requester = raw.requester
  const members = raw.members
  if (!model || !input || typeof requester !== 'string' || !Array.isArray(members)) {
    throw new InvalidReceiptError('quorum record is missing model, input, requester or members')
  }
  const quorum = raw.quorum
  if (!Number.isInteger(quorum) || (quorum as number) < 1) throw new InvalidReceiptError('bad quorum')
  const compare = checkPolicy({
    ...BASE_POLICY,
    redundancy: 5,
    quorum: 1,
    compare: raw.compare as CompareRule,
  }).compare
  const checked: { worker: string; outputs: NamedTensors; outputCid: string }[] = []
  for (const [i, m] of members.entries()) {
    const r = await verifyReceipt((m as { receipt?: unknown })?.receipt, { model, input, requester })
    const outputs = decodeTensors((m as { outputs?: unknown }).outputs)
    const cid = await tensorsCid(outputs)
    if (!cid.equals(r.body.output))
      throw new InvalidReceiptError(`member ${i}: outputs do not hash to the receipt's CID`)
    if (checked.some((c) => c.worker === r.body.worker)) {
      throw new InvalidReceiptError(`member ${i}: worker ${r.body.worker} appears twice`)
    }
    const agreed = checked.every((c) => outputsAgree(c, { outputs, outputCid: cid.toString() }, compare))
    if (!agreed) throw new InvalidReceiptError(`member ${i}: outputs disagree under the ${compare.kind} rule`)
    checked.push({ worker: r.body.worker, outputs, outputCid: cid.toString() })
  }
  const receipts = members.map((m) => (m as { receipt: Receipt }).receipt)
  const dispute =
    raw.dispute === undefined
      ? undefined
      : await checkDispute(raw.dispute, { compare, model, input, requester, receipts, checked, opts })
  // A dispute rules the other side out; it does not count as a check of the member's whole result.
  const need = Math.max(quorum as number, minQuorum)
  const have = checked.length
  if (have < need) throw new QuorumNotMetError(`${have} agreeing receipts, quorum is ${need}`)
  return {
    model: model.toString(),
    input: input.toString(),
    requester,
    quorum: quorum as number,
    workers: checked.map((c) => c.worker),
    outputs: checked.map((c) => c.outputCid),
    ...(dispute ? { dispute } : {}),
  }
}

const bad = (why: string): never => {
  throw new InvalidDisputeRecordError(`quorum record dispute: ${why}`)
}
const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null
const ACCEPTS: Record<string, 'a' | 'b' | undefined> = { 'a-invalid': 'b', 'b-invalid': 'a' }

/** What checkDispute is given: the record's job and its checked members. */
interface DisputeContext {
  /** The record's compare rule: the dispute must have been judged under the rules it implies. */
  compare: CompareRule
  model: CID
  input: CID
  requester: string
  receipts: Receipt[]
  checked: { worker: string }[]
  opts: VerifyQuorumOptions
}

/**
 * The dispute beside a record's members: each side's receipt is its worker's for this job, the
 * record's verdict accepts a member's side, and the other side is no member. The record binds the
 * sides to their jobs by signatures: a v2 record (over cuts) by each side's signed cuts, a v1 record
 * by each side's signed commitment here. With the plan, the record's evidence and judgements are
 * checked too; with `run`, the verdict is proven.
 */
async function checkDispute(x: unknown, c: DisputeContext): Promise<DisputeCheck> {
  if (!isObject(x) || !(x.record instanceof Uint8Array) || (x.side !== 'a' && x.side !== 'b'))
    return bad('malformed')
  const side = x.side
  const other = side === 'a' ? 'b' : 'a'
  const party = (s: 'a' | 'b') => (isObject(x[s]) ? x[s] : bad(`side ${s} is malformed`))
  const sides = { a: party('a'), b: party('b') }
  const worker = (s: 'a' | 'b') =>
    typeof sides[s].worker === 'string' ? sides[s].worker : bad(`no worker ${s}`)
  const at = c.checked.findIndex((m) => m.worker === worker(side))
  if (at < 0) bad(`side ${side} is not a member's worker`)
  if (c.checked.some((m) => m.worker === worker(other))) bad(`side ${other}, ruled out, is a member`)
  if (worker(other) === worker(side)) bad('both sides are one worker')
  const jobs: Partial<Record<'a' | 'b', CID>> = {}
  for (const s of ['a', 'b'] as const) {
    // Each replica was its own signed job: its receipt names the job its evidence must name.
    const { model, input, requester } = c
    const receipt = await verifyReceipt(sides[s].receipt, { model, input, requester }).catch((err: Error) =>
      bad(`side ${s}'s receipt: ${err.message}`),
    )
    if (receipt.body.worker !== worker(s)) bad(`side ${s}'s receipt is not its worker's`)
    const member = c.receipts[at]!.body
    if (s === side && !(receipt.body.job.equals(member.job) && receipt.body.output.equals(member.output)))
      bad(`side ${s} is not the member`)
    jobs[s] = receipt.body.job
  }
  const workers = { a: worker('a'), b: worker('b') }
  const v = recordVersion(x.record, c.compare)
  const found =
    v === 2
      ? await checkCutDispute(x.record, c, workers, { a: jobs.a!, b: jobs.b! })
      : await checkCommitDispute(x.record, c, sides, workers, { a: jobs.a!, b: jobs.b! })
  const accepts = found.verdict === 'drift' ? found.closer : ACCEPTS[found.verdict]
  if (accepts !== side) bad(`a '${found.verdict}' verdict does not accept side ${side}`)
  return { verdict: found.verdict, other: worker(other), checked: found.checked, proven: found.proven }
}

/**
 * The dispute record's version (1: every node committed; 2: over cuts), once its rules are the ones
 * the job's compare rule implies: a record may not pick looser or stricter rules (or a referee
 * rule of its own) to turn drift into a conviction.
 */
function recordVersion(record: Uint8Array, compare: CompareRule): 1 | 2 {
  let r: unknown
  try {
    r = dagCbor.decode(record)
  } catch {
    return bad('the record is not dag-cbor')
  }
  if (!isObject(r) || r.kind !== DISPUTE_RECORD_KIND || (r.v !== 1 && r.v !== 2))
    bad('not a v1 or v2 dispute record')
  const rules = (x: unknown) => {
    try {
      return dagCbor.encode(defined(x))
    } catch {
      return bad('the record has malformed rules')
    }
  }
  const r2 = r as { v: 1 | 2; rules?: unknown; compare?: unknown }
  if (r2.compare !== undefined || !sameBytes(rules(r2.rules), rules(disputeRules(compare))))
    bad("the record was not judged under the rules of the job's compare rule")
  return r2.v
}

interface Found {
  verdict: DisputeCheck['verdict']
  closer?: unknown
  checked: DisputeCheck['checked']
  proven: boolean
}
const VERDICTS: readonly string[] = ['a-invalid', 'b-invalid', 'drift']
const verdictOf = (v: unknown): DisputeCheck['verdict'] =>
  VERDICTS.includes(v as string)
    ? (v as DisputeCheck['verdict'])
    : bad(`a '${String(v)}' verdict accepts no side`)

/** A v2 record: each side's cuts signed by its worker about its own job (and, with the plan, all of it). */
async function checkCutDispute(
  record: Uint8Array,
  c: DisputeContext,
  workers: { a: string; b: string },
  jobs: { a: CID; b: CID },
): Promise<Found> {
  const sig = await checkCutRecordSignatures(record, { model: c.model, input: c.input, jobs }).catch(
    (err: Error) => bad(err.message),
  )
  if (sig.workers.a !== workers.a || sig.workers.b !== workers.b)
    bad("the record's workers are not the sides'")
  const verdict = verdictOf(sig.verdict)
  if (!c.opts.plan) return { verdict, closer: sig.closer, checked: 'commitments', proven: false }
  // The plan's own CID must be the record's model: verifyCutRecord computes it from the plan.
  const opts = { plan: c.opts.plan, ...(c.opts.run ? { run: c.opts.run } : {}) }
  const check = await verifyCutRecord(record, opts)
  if (check.verdict !== verdict) bad('the record changed its verdict')
  return { verdict, closer: sig.closer, checked: 'record', proven: check.proven }
}

/** A v1 record: each side's signed commitment, and the record's roots the ones signed. */
async function checkCommitDispute(
  record: Uint8Array,
  c: DisputeContext,
  sides: { a: Record<string, unknown>; b: Record<string, unknown> },
  workers: { a: string; b: string },
  jobs: { a: CID; b: CID },
): Promise<Found> {
  const r = dagCbor.decode(record) as Record<string, unknown>
  if (r.model !== c.model.toString()) bad(`the record is about model ${String(r.model)}`)
  const verdict = verdictOf(r.verdict)
  for (const s of ['a', 'b'] as const) {
    const expect = { worker: workers[s], job: jobs[s], model: c.model, input: c.input }
    const signed = await verifyCommitment(sides[s].signed, expect).catch((err: Error) =>
      bad(`side ${s}'s commitment: ${err.message}`),
    )
    const committed = isObject(r[s]) ? (r[s] as { commitment?: unknown }).commitment : undefined
    const { root, leaves } = signed.body
    await checkCommitment(committed as never, leaves, root).catch((err: Error) =>
      bad(`side ${s}: ${err.message}`),
    )
  }
  if (!c.opts.plan) return { verdict, closer: r.closer, checked: 'commitments', proven: false }
  // The plan's own CID must be the record's model: verifyDisputeRecord computes it from the plan.
  const opts = { plan: c.opts.plan, ...(c.opts.run ? { run: c.opts.run } : {}) }
  const check = await verifyDisputeRecord(record, opts)
  if (check.verdict !== verdict) bad('the record changed its verdict')
  return { verdict, closer: r.closer, checked: 'record', proven: check.proven }
}
