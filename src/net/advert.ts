/** Signed capability adverts: what a peer can run, how busy it is, and how to dial it. */
import * as dagCbor from '@ipld/dag-cbor'
import type { PrivateKey } from '@libp2p/interface'
import { MalformedFrameError } from '../shared/errors.ts'
import { signRecord, verifyRecord } from '../trust/signed.ts'

export const ADVERT_DOMAIN = 'peer-compute/advert/1'
export const MAX_ADVERT_BYTES = 16 * 1024

/** Whether an advert ordered [ts, seq] is newer than another: a later `ts`, then a higher `seq`. */
export const newerAdvert = (a: readonly [number, number], b: readonly [number, number]): boolean =>
  a[0] > b[0] || (a[0] === b[0] && a[1] > b[1])
/** Above any real peer's job slots (the settings allow 16): a claim past it is a lie, not a peer. */
export const MAX_ADVERT_SLOTS = 64
const MAX_THREADS = 1024

export interface Capabilities {
  /** Execution providers this peer can use, best first. */
  eps: string[]
  /** Adapter class, e.g. "swiftshader (fallback)", or "none" without WebGPU. */
  adapter: string
  threads: number
  /** Free job slots now; 0 when busy or not contributing. */
  slots: number
  maxSlots: number
  contributing: boolean
  /** CIDs of models in the local cache. */
  models: string[]
  /** Kept on the wire for older peers; always 0 and never read: speed is what requesters time. */
  benchUs: number
  version: string
  /** onnxruntime-web version: part of the homogeneous class for exact comparison. */
  ort: string
}

export interface AdvertBody extends Capabilities {
  v: 1
  peer: string
  addrs: string[]
  seq: number
  ts: number
}

export interface Advert {
  body: AdvertBody
  sig: Uint8Array
}

export async function signAdvert(body: AdvertBody, key: PrivateKey): Promise<Uint8Array> {
  return dagCbor.encode({ body, sig: await signRecord(ADVERT_DOMAIN, body, key) })
}

const isStr = (v: unknown, max = 256): v is string => typeof v === 'string' && v.length <= max
const isInt = (v: unknown, max = Number.MAX_SAFE_INTEGER): v is number =>
  Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) <= max
const strList = (v: unknown, n: number, max = 512) =>
  Array.isArray(v) && v.length <= n && v.every((s) => isStr(s, max))

/**
 * Decodes and checks an advert from the network: its signature by the PeerId it names (whoever
 * forwarded it). `from`, when given, must be that PeerId.
 */
export async function openAdvert(bytes: Uint8Array, from?: string): Promise<Advert> {
  if (bytes.byteLength > MAX_ADVERT_BYTES)
    throw new MalformedFrameError(`advert of ${bytes.byteLength} bytes`)
  let raw: unknown
  try {
    raw = dagCbor.decode(bytes)
  } catch (err) {
    throw new MalformedFrameError(`advert is not dag-cbor: ${(err as Error).message}`)
  }
  const { body, sig } = (raw ?? {}) as { body?: Record<string, unknown>; sig?: unknown }
  const b = body ?? {}
  const ok =
    sig instanceof Uint8Array &&
    b.v === 1 &&
    isStr(b.peer, 128) &&
    (from === undefined || b.peer === from) &&
    strList(b.addrs, 16) &&
    strList(b.eps, 8, 32) &&
    isStr(b.adapter) &&
    isInt(b.threads, MAX_THREADS) &&
    isInt(b.maxSlots, MAX_ADVERT_SLOTS) &&
    isInt(b.slots, b.maxSlots as number) &&
    typeof b.contributing === 'boolean' &&
    strList(b.models, 256, 128) &&
    isInt(b.benchUs) &&
    isStr(b.version, 32) &&
    isStr(b.ort, 32) &&
    isInt(b.seq) &&
    isInt(b.ts)
  if (!ok)
    throw new MalformedFrameError(`advert from ${from ?? String(b.peer).slice(0, 128)} has a bad shape`)
  await verifyRecord(ADVERT_DOMAIN, body, sig, b.peer as string)
  return { body: body as unknown as AdvertBody, sig }
}
