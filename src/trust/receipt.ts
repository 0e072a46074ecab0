/**
 * Worker-signed receipts: anyone can verify one offline, since the worker's Ed25519 key is inside
 * its peer id. Timings are integer microseconds so the dag-cbor body holds no floats.
 */
import * as dagCbor from '@ipld/dag-cbor'
import type { PrivateKey } from '@libp2p/interface'
import { CID } from 'multiformats/cid'
import { InvalidReceiptError, InvalidSignatureError, OutputMismatchError } from '../shared/errors.ts'
import { peerIdOf, sign, verifyByPeerId } from './keys.ts'
import { signingBytes } from './signed.ts'

export const RECEIPT_DOMAIN = 'peer-compute/receipt/1'
const MAX_STRING = 128

export interface ReceiptTiming {
  /** Time queued on the worker, integer microseconds. */
  queueUs: number
  /** Inference time, integer microseconds. */
  runUs: number
}

export interface ReceiptBody {
  v: 1
  job: CID
  model: CID
  input: CID
  output: CID
  worker: string
  requester: string
  /** Execution provider, e.g. 'wasm' or 'webgpu'. */
  ep: string
  /** Adapter class, e.g. a GPU vendor/architecture or 'cpu'. */
  adapter: string
  timing: ReceiptTiming
  /** Signing time, integer ms since the epoch. */
  ts: number
}

export interface Receipt {
  body: ReceiptBody
  sig: Uint8Array
}

export type ReceiptExpectations = Partial<
  Pick<ReceiptBody, 'job' | 'model' | 'input' | 'output' | 'worker' | 'requester'>
>

const BODY_KEYS = [
  'adapter',
  'ep',
  'input',
  'job',
  'model',
  'output',
  'requester',
  'timing',
  'ts',
  'v',
  'worker',
]
const CID_FIELDS = ['job', 'model', 'input', 'output'] as const
const STRING_FIELDS = ['worker', 'requester', 'ep', 'adapter'] as const

/** Converts a (fractional) millisecond duration to the integer microseconds receipts carry. */
export function msToUs(ms: number): number {
  return Math.max(0, Math.round(ms * 1000))
}

const bad = (msg: string): never => {
  throw new InvalidReceiptError(msg)
}

function asMap(x: unknown, path: string, keys: string[]): Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x) || ArrayBuffer.isView(x) || CID.asCID(x)) {
    return bad(`${path} must be a map`)
  }
  if (Object.keys(x).sort().join() !== keys.join()) bad(`${path} must have exactly ${keys.join(', ')}`)
  return x as Record<string, unknown>
}

function uint(x: unknown, path: string): number {
  return Number.isSafeInteger(x) && (x as number) >= 0
    ? (x as number)
    : bad(`${path} must be a non-negative integer`)
}

/** Strictly checks the shape of an untrusted receipt (not its signature); returns a normalized copy. */
export function parseReceipt(x: unknown): Receipt {
  const r = asMap(x, 'receipt', ['body', 'sig'])
  const b = asMap(r.body, 'receipt.body', BODY_KEYS)
  if (b.v !== 1) bad('receipt.body.v must be 1')
  const body = { v: 1 } as ReceiptBody
  for (const f of CID_FIELDS) body[f] = CID.asCID(b[f]) ?? bad(`receipt.body.${f} must be a CID`)
  for (const f of STRING_FIELDS) {
    const s = b[f]
    if (typeof s !== 'string' || s.length === 0 || s.length > MAX_STRING) {
      bad(`receipt.body.${f} must be a string of 1..${MAX_STRING} chars`)
    }
    body[f] = s as string
  }
  const t = asMap(b.timing, 'receipt.body.timing', ['queueUs', 'runUs'])
  body.timing = {
    queueUs: uint(t.queueUs, 'receipt.body.timing.queueUs'),
    runUs: uint(t.runUs, 'receipt.body.timing.runUs'),
  }
  body.ts = uint(b.ts, 'receipt.body.ts')
  if (!(r.sig instanceof Uint8Array)) bad('receipt.sig must be bytes')
  return { body, sig: r.sig as Uint8Array }
}

/** Signs as the worker; the key must be the one named by `body.worker`. */
export async function signReceipt(body: ReceiptBody, key: PrivateKey): Promise<Receipt> {
  const { body: parsed } = parseReceipt({ body, sig: new Uint8Array() })
  if (peerIdOf(key) !== parsed.worker) throw new InvalidSignatureError('key is not the receipt worker')
  return { body: parsed, sig: await sign(key, signingBytes(RECEIPT_DOMAIN, parsed)) }
}

/**
 * Verifies shape, the worker's signature and each expected field. Throws InvalidReceiptError,
 * InvalidSignatureError, or OutputMismatchError (output CID differs).
 */
export async function verifyReceipt(receipt: unknown, expect: ReceiptExpectations = {}): Promise<Receipt> {
  const r = parseReceipt(receipt)
  await verifyByPeerId(r.body.worker, signingBytes(RECEIPT_DOMAIN, r.body), r.sig)
  for (const f of CID_FIELDS) {
    const want = expect[f]
    if (want == null || want.equals(r.body[f])) continue
    const msg = `receipt ${f} ${r.body[f]} != expected ${want}`
    throw f === 'output' ? new OutputMismatchError(msg) : new InvalidReceiptError(msg)
  }
  for (const f of ['worker', 'requester'] as const) {
    const want = expect[f]
    if (want != null && want !== r.body[f]) bad(`receipt ${f} ${r.body[f]} != expected ${want}`)
  }
  return r
}

export function encodeReceipt(r: Receipt): Uint8Array {
  return dagCbor.encode({ body: r.body, sig: r.sig })
}

/** Decodes and shape-checks stored or exported bytes; call verifyReceipt to check the signature. */
export function decodeReceipt(bytes: Uint8Array): Receipt {
  let x: unknown
  try {
    x = dagCbor.decode(bytes)
  } catch (err) {
    return bad(`receipt is not valid dag-cbor: ${(err as Error).message}`)
  }
  return parseReceipt(x)
}
