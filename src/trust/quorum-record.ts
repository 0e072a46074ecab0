/**
 * Portable quorum records: the signed receipts (and outputs) of the replicas that agreed on a job.
 * Anyone can check one offline: signatures, CIDs, distinct workers, agreement, and the quorum. A job
 * settled by dispute holds one member and the dispute (DESIGN.md, Verification).
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { checkCommitment } from '../dispute/bisect.ts'
import type { DisputePlan } from '../dispute/commit.ts'
import { DISPUTE_RECORD_KIND, verifyDisputeRecord } from '../dispute/record.ts'
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
  /** Each side's worker, its signed commitment, and the receipt it signed for its own replica. */
  a: DisputeParty
  b: DisputeParty
}
export interface DisputeParty {
  worker: string
  signed: SignedCommitment
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
      : await checkDispute(raw.dispute, { model, input, requester, receipts, checked, opts })
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

/**
 * The dispute beside a record's members: both workers signed commitments to this job with the
 * record's roots, the record's verdict accepts a member's side, and the other side is no member. With the plan, the record's
 * proofs and judgements are checked too (verifyDisputeRecord); with `run`, the verdict is proven.
 */
async function checkDispute(
  x: unknown,
  c: {
    model: CID
    input: CID
    requester: string
    receipts: Receipt[]
    checked: { worker: string }[]
    opts: VerifyQuorumOptions
  },
): Promise<DisputeCheck> {
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
  const signed: Partial<Record<'a' | 'b', SignedCommitment>> = {}
  for (const s of ['a', 'b'] as const) {
    // Each replica was its own signed job: its receipt names the job its commitment must name.
    const { model, input, requester } = c
    const receipt = await verifyReceipt(sides[s].receipt, { model, input, requester }).catch((err: Error) =>
      bad(`side ${s}'s receipt: ${err.message}`),
    )
    if (receipt.body.worker !== worker(s)) bad(`side ${s}'s receipt is not its worker's`)
    const member = c.receipts[at]!.body
    if (s === side && !(receipt.body.job.equals(member.job) && receipt.body.output.equals(member.output)))
      bad(`side ${s} is not the member`)
    const expect = { worker: worker(s), job: receipt.body.job, model, input }
    signed[s] = await verifyCommitment(sides[s].signed, expect).catch((err: Error) =>
      bad(`side ${s}'s commitment: ${err.message}`),
    )
  }
  let r: Record<string, unknown>
  try {
    r = dagCbor.decode(x.record) as Record<string, unknown>
  } catch {
    return bad('the record is not dag-cbor')
  }
  if (!isObject(r) || r.kind !== DISPUTE_RECORD_KIND || r.v !== 1) bad('not a v1 dispute record')
  if (r.model !== c.model.toString()) bad(`the record is about model ${String(r.model)}`)
  const verdict = r.verdict as DisputeCheck['verdict']
  const accepts = verdict === 'drift' ? r.closer : ACCEPTS[verdict as string]
  if (accepts !== side) bad(`a '${String(verdict)}' verdict does not accept side ${side}`)
  for (const s of ['a', 'b'] as const) {
    const committed = isObject(r[s]) ? (r[s] as { commitment?: unknown }).commitment : undefined
    const { root, leaves } = signed[s]!.body
    await checkCommitment(committed as never, leaves, root).catch((err: Error) =>
      bad(`side ${s}: ${err.message}`),
    )
  }
  let checked: DisputeCheck['checked'] = 'commitments'
  let proven = false
  if (c.opts.plan) {
    // The plan's own CID must be the record's model: verifyDisputeRecord computes it from the plan.
    const opts = { plan: c.opts.plan, ...(c.opts.run ? { run: c.opts.run } : {}) }
    const check = await verifyDisputeRecord(x.record, opts)
    if (check.verdict !== verdict) bad('the record changed its verdict')
    checked = 'record'
    proven = check.proven
  }
  return { verdict, other: worker(other), checked, proven }
}
