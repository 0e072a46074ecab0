/**
 * The credit log: a hash-linked, append-only list of the signed receipts of jobs this browser served.
 * Pure functions: build entries, export a signed JSON file, and verify one offline
 * (every receipt's signature, the chain, the totals, and the exporter's signature over the head).
 */
import * as dagCbor from '@ipld/dag-cbor'
import type { PrivateKey } from '@libp2p/interface'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { toString as bytesToString, fromString } from 'uint8arrays'
import { InvalidCreditLogError } from '../shared/errors.ts'
import type { CreditRecord } from '../store/schema.ts'
import { peerIdOf } from './keys.ts'
import { decodeReceipt, verifyReceipt } from './receipt.ts'
import { signRecord, verifyRecord } from './signed.ts'

export const CREDIT_LOG_KIND = 'peer-compute/credit-log'
export const CREDIT_LOG_DOMAIN = 'peer-compute/credit-log/1'
/** One credit per served, signed job; compute time is reported beside it but is self-declared. */
export const CREDIT_PER_RECEIPT = 1
const MAX_FILE_BYTES = 256 * 1024 * 1024

/** What the exporter signs: the head of the chain and the totals, so no entry can be dropped from the end. */
export interface CreditLogHead {
  count: number
  credit: number
  /** Sum of the receipts' run times, integer microseconds. */
  runUs: number
  /** CID of the last entry ('' for an empty log). */
  cid: string
}

export interface CreditLogFile {
  kind: typeof CREDIT_LOG_KIND
  v: 1
  signer: string
  exportedAt: number
  head: CreditLogHead
  entries: { seq: number; prev: string; cid: string; credit: number; at: number; receipt: string }[]
  /** base64 Ed25519 signature by `signer` over { kind, signer, exportedAt, head }. */
  sig: string
}

export interface CreditLogSummary extends CreditLogHead {
  signer: string
  exportedAt: number
  /** PeerIds that signed receipts in the log (a browser's tabs may use several identities). */
  workers: string[]
}

/** CIDv1 dag-cbor sha2-256 of `{ seq, prev, receipt }`. */
export async function creditEntryCid(seq: number, prev: string, receipt: Uint8Array): Promise<string> {
  const digest = await sha256.digest(dagCbor.encode({ seq, prev, receipt }))
  return CID.createV1(dagCbor.code, digest).toString()
}

/** The entry that appends `receipt` (dag-cbor receipt bytes) after `last`. */
export async function nextCreditEntry(
  last: CreditRecord | undefined,
  receipt: Uint8Array,
  at = Date.now(),
): Promise<CreditRecord> {
  const seq = last ? last.seq + 1 : 0
  const prev = last?.cid ?? ''
  return { seq, prev, receipt, cid: await creditEntryCid(seq, prev, receipt), credit: CREDIT_PER_RECEIPT, at }
}

const signedBody = (f: Pick<CreditLogFile, 'kind' | 'signer' | 'exportedAt' | 'head'>) => ({
  kind: f.kind,
  signer: f.signer,
  exportedAt: f.exportedAt,
  head: f.head,
})

/** Serializes `records` (oldest first) as a signed JSON file. */
export async function exportCreditLog(
  records: CreditRecord[],
  key: PrivateKey,
  exportedAt = Date.now(),
): Promise<Uint8Array> {
  const sorted = [...records].sort((a, b) => a.seq - b.seq)
  let runUs = 0
  for (const r of sorted) runUs += decodeReceipt(r.receipt).body.timing.runUs
  const last = sorted.at(-1)
  const head: CreditLogHead = {
    count: sorted.length,
    credit: sorted.reduce((s, r) => s + r.credit, 0),
    runUs,
    cid: last?.cid ?? '',
  }
  const file = { kind: CREDIT_LOG_KIND, v: 1, signer: peerIdOf(key), exportedAt, head } as const
  const sig = await signRecord(CREDIT_LOG_DOMAIN, signedBody(file), key)
  const out: CreditLogFile = {
    ...file,
    entries: sorted.map((r) => ({
      seq: r.seq,
      prev: r.prev,
      cid: r.cid,
      credit: r.credit,
      at: r.at,
      receipt: bytesToString(r.receipt, 'base64'),
    })),
    sig: bytesToString(sig, 'base64'),
  }
  return new TextEncoder().encode(JSON.stringify(out, null, 1))
}

const bad = (msg: string): never => {
  throw new InvalidCreditLogError(msg)
}
const isObj = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x)
const uint = (x: unknown, path: string) =>
  Number.isSafeInteger(x) && (x as number) >= 0
    ? (x as number)
    : bad(`${path} must be a non-negative integer`)
const str = (x: unknown, path: string) => (typeof x === 'string' ? x : bad(`${path} must be a string`))
const b64 = (x: unknown, path: string) => {
  try {
    return fromString(str(x, path), 'base64')
  } catch {
    return bad(`${path} is not base64`)
  }
}

/** Checks an exported log offline; throws InvalidCreditLogError naming the first problem. */
export async function verifyCreditLog(bytes: Uint8Array): Promise<CreditLogSummary> {
  if (bytes.byteLength > MAX_FILE_BYTES) bad('file is too large')
  let f: unknown
  try {
    f = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch {
    return bad('not a JSON file')
  }
  if (!isObj(f) || f.kind !== CREDIT_LOG_KIND || f.v !== 1) return bad(`kind must be ${CREDIT_LOG_KIND}, v 1`)
  if (!Array.isArray(f.entries)) return bad('entries must be an array')
  const headIn = isObj(f.head) ? f.head : bad('head must be an object')
  const head: CreditLogHead = {
    count: uint(headIn.count, 'head.count'),
    credit: uint(headIn.credit, 'head.credit'),
    runUs: uint(headIn.runUs, 'head.runUs'),
    cid: str(headIn.cid, 'head.cid'),
  }
  const signer = str(f.signer, 'signer')
  const exportedAt = uint(f.exportedAt, 'exportedAt')
  const sig = b64(f.sig, 'sig')
  const jobs = new Set<string>()
  const workers = new Set<string>()
  let prev = ''
  let credit = 0
  let runUs = 0
  for (const [i, e] of f.entries.entries()) {
    const at = `entries[${i}]`
    if (!isObj(e)) return bad(`${at} must be an object`)
    if (uint(e.seq, `${at}.seq`) !== i)
      bad(`${at}.seq is ${e.seq}, expected ${i}: an entry was removed or reordered`)
    if (str(e.prev, `${at}.prev`) !== prev)
      bad(`${at}.prev does not link to the previous entry: the chain is broken`)
    const receipt = b64(e.receipt, `${at}.receipt`)
    const cid = await creditEntryCid(i, prev, receipt)
    if (str(e.cid, `${at}.cid`) !== cid) bad(`${at}.cid does not match its content`)
    const r = await verifyReceipt(decodeReceipt(receipt)).catch((err: Error) =>
      bad(`${at}.receipt does not verify: ${err.message}`),
    )
    const job = r.body.job.toString()
    if (jobs.has(job)) bad(`${at} repeats the receipt of job ${job}`)
    jobs.add(job)
    workers.add(r.body.worker)
    if (uint(e.credit, `${at}.credit`) !== CREDIT_PER_RECEIPT)
      bad(`${at}.credit must be ${CREDIT_PER_RECEIPT}`)
    credit += CREDIT_PER_RECEIPT
    runUs += r.body.timing.runUs
    prev = cid
  }
  const got: CreditLogHead = { count: f.entries.length, credit, runUs, cid: prev }
  for (const k of ['count', 'credit', 'runUs', 'cid'] as const) {
    if (got[k] !== head[k]) bad(`head.${k} is ${head[k]} but the entries give ${got[k]}`)
  }
  // Last: the exporter's signature over the head, so dropping entries from the end is caught too.
  await verifyRecord(
    CREDIT_LOG_DOMAIN,
    signedBody({ kind: CREDIT_LOG_KIND, signer, exportedAt, head }),
    sig,
    signer,
  ).catch(() =>
    bad(`the head signature by ${signer} does not hold: count, totals or last entry were changed`),
  )
  return { ...head, signer, exportedAt, workers: [...workers] }
}
