/**
 * Portable quorum records: the signed receipts (and outputs) of the replicas that agreed on a job.
 * Anyone can check one offline: signatures, CIDs, distinct workers, agreement, and the quorum.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { InvalidReceiptError, QuorumNotMetError } from '../shared/errors.ts'
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
}

export function buildQuorumRecord(
  members: { receipt: Receipt; outputs: NamedTensors }[],
  quorum: number,
  compare: CompareRule,
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
}

/** Verifies a record from bytes; throws a named error saying what is wrong. */
export async function verifyQuorumRecord(bytes: Uint8Array, minQuorum = 1): Promise<QuorumCheck> {
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
  const need = Math.max(quorum as number, minQuorum)
  if (checked.length < need)
    throw new QuorumNotMetError(`${checked.length} agreeing receipts, quorum is ${need}`)
  return {
    model: model.toString(),
    input: input.toString(),
    requester,
    quorum: quorum as number,
    workers: checked.map((c) => c.worker),
    outputs: checked.map((c) => c.outputCid),
  }
}
