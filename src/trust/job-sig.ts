/** Requester-signed job bodies. The job CID names a job; receipts point back to it. */
import * as dagCbor from '@ipld/dag-cbor'
import type { PrivateKey } from '@libp2p/interface'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { InvalidSignatureError, MalformedFrameError } from '../shared/errors.ts'
import { peerIdOf, sign, verifyByPeerId } from './keys.ts'
import { signingBytes } from './signed.ts'

export const JOB_DOMAIN = 'peer-compute/job/1'
export const NONCE_BYTES = 16

export interface JobBody {
  v: 1
  model: CID
  input: CID
  requester: string
  /** Deadline in ms since the epoch; an integer. */
  deadline: number
  nonce: Uint8Array
  /**
   * Run the job as its trace and keep it a while (src/dispute/kept.ts): a dispute about this job
   * then needs no second run. Absent when not asked (older contributors know no such key).
   */
  trace?: true
}

const JOB_KEYS = ['deadline', 'input', 'model', 'nonce', 'requester', 'v']

export function newNonce(): Uint8Array {
  return globalThis.crypto.getRandomValues(new Uint8Array(NONCE_BYTES))
}

/** Strictly validates an untrusted job body; errors name the field path. */
export function parseJobBody(x: unknown, path = 'body'): JobBody {
  const bad = (field: string, why: string): never => {
    throw new MalformedFrameError(`${path}${field ? `.${field}` : ''}: ${why}`)
  }
  if (typeof x !== 'object' || x === null || Array.isArray(x) || ArrayBuffer.isView(x) || CID.asCID(x)) {
    return bad('', 'must be a map')
  }
  const o = x as Record<string, unknown>
  const keys = Object.keys(o)
    .filter((k) => k !== 'trace')
    .sort()
  if (keys.join() !== JOB_KEYS.join()) bad('', `must have exactly ${JOB_KEYS.join(', ')}, and may have trace`)
  if ('trace' in o && o.trace !== true) bad('trace', 'must be true when present')
  if (o.v !== 1) bad('v', 'must be 1')
  const model = CID.asCID(o.model) ?? bad('model', 'must be a CID')
  const input = CID.asCID(o.input) ?? bad('input', 'must be a CID')
  if (typeof o.requester !== 'string' || o.requester.length === 0 || o.requester.length > 128) {
    bad('requester', 'must be a peer id string')
  }
  if (!Number.isSafeInteger(o.deadline) || (o.deadline as number) < 0) bad('deadline', 'must be an integer')
  if (!(o.nonce instanceof Uint8Array) || o.nonce.byteLength !== NONCE_BYTES) {
    bad('nonce', `must be ${NONCE_BYTES} bytes`)
  }
  return {
    v: 1,
    model,
    input,
    requester: o.requester as string,
    deadline: o.deadline as number,
    nonce: o.nonce as Uint8Array,
    ...(o.trace === true ? { trace: true as const } : {}),
  }
}

/** CIDv1 dag-cbor sha2-256 of the canonical job body. */
export async function jobCid(body: JobBody): Promise<CID> {
  return CID.createV1(dagCbor.code, await sha256.digest(dagCbor.encode(parseJobBody(body))))
}

/** Signs as the requester; the key must be the one named by `body.requester`. */
export async function signJob(body: JobBody, key: PrivateKey): Promise<Uint8Array> {
  const parsed = parseJobBody(body)
  if (peerIdOf(key) !== parsed.requester) throw new InvalidSignatureError('key is not the job requester')
  return sign(key, signingBytes(JOB_DOMAIN, parsed))
}

/** Validates the body and the requester's signature; returns the normalized body. */
export async function verifyJobSig(body: unknown, sig: Uint8Array): Promise<JobBody> {
  const parsed = parseJobBody(body)
  await verifyByPeerId(parsed.requester, signingBytes(JOB_DOMAIN, parsed), sig)
  return parsed
}
