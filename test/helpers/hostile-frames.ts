/**
 * Malformed frames for the job, model and advert protocols, and the floods that deliver them: what
 * a hostile peer (test/helpers/hostile-peer.ts) sends at a tab. Every frame is varint-prefixed, as
 * on the wire; some lie about their length, some end early, some decode to the wrong shape.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Connection, PrivateKey, Stream } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { MAX_ADVERT_BYTES, signAdvert } from '../../src/net/advert.ts'
import { encodeFrame, type Frame, FrameDecoder } from '../../src/net/frame.ts'
import { concat } from '../../src/shared/bytes.ts'
import { encodeTensors, tensorsCid } from '../../src/shared/tensor-codec.ts'
import { newNonce, signJob } from '../../src/trust/job-sig.ts'
import { advertBody } from './advert.ts'

function varint(n: number): number[] {
  const out: number[] = []
  for (; n >= 0x80; n = Math.floor(n / 0x80)) out.push((n % 0x80) | 0x80)
  out.push(n)
  return out
}

/** A frame of raw body bytes (declaring `declared` bytes, the body's length unless it lies). */
const raw = (body: number[] | Uint8Array, declared = body.length) =>
  Uint8Array.from([...varint(declared), ...body])
const cbor = (x: unknown) => encodeFrame(x as Frame)

/** Body bytes: `depth` nested one-element arrays around 0. */
const nested = (depth: number) => [...new Array(depth).fill(0x81), 0x00]
/** An array of `n` empty arrays: n bytes that decode to n objects. */
const manyArrays = (n: number) => [
  0x9a,
  (n >>> 24) & 255,
  (n >>> 16) & 255,
  (n >>> 8) & 255,
  n & 255,
  ...new Array(n).fill(0x80),
]

/** Templates for frames that must each end in a refusal; the stream's write side closes after each. */
function commonFrames(limit: number): Uint8Array[] {
  return [
    raw([]), // zero-length frame
    Uint8Array.from([0x80, 0x00]), // varint not minimal
    Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), // varint over 5 bytes
    raw([0xa1, 0x61, 0x74], limit + 1), // declares more than the limit
    raw([0xa1, 0x61, 0x74], 1000), // ends mid-frame
    raw([0xff, 0xfe, 0xfd, 0x00]), // not cbor
    raw([0x83, 0x01, 0x02, 0x03]), // an array
    raw([0x07]), // an integer
    raw([0xf7]), // undefined: not dag-cbor
    raw([0xf9, 0x7e, 0x00]), // NaN: not dag-cbor
    raw([0xbb, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]), // a map claiming 4 G entries
    raw([0x9b, 0, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), // an array claiming 2^53 entries
    raw([0x5a, 0x00, 0xff, 0xff, 0xff, 0x00]), // bytes claiming 16 MiB
    raw([0xa1, 0x61, 0x74, 0x62, 0xc3, 0x28]), // t: invalid UTF-8
    raw([0xa1, 0x61, 0x74, 0xd8, 0x2a, 0x43, 0x00, 0x01, 0x02]), // t: a tag-42 CID of garbage
    raw(nested(Math.min(limit - 1, 20_000))), // deep nesting
    cbor({ x: 1 }), // no t
    cbor({ t: 7 }),
  ]
}

/** Malformed `/peer-compute/job/1.1.0` requests; `key` signs the few that need a real signature. */
export async function jobFrames(key: PrivateKey, model: string, limit: number): Promise<Uint8Array[]> {
  const requester = peerIdFromPrivateKey(key).toString()
  const x = new Float32Array(16).fill(0.25)
  const inputs = encodeTensors({ x: { dtype: 'float32', dims: [1, 16], data: x } })
  const body = {
    v: 1,
    model: CID.parse(model),
    input: await tensorsCid({ x: { dtype: 'float32', dims: [1, 16], data: x } }),
    requester,
    deadline: Date.now() + 10 * 60_000,
    nonce: newNonce(),
  } as const
  const sig = await signJob(body, key)
  const otherInput = CID.createV1(0x71, await sha256.digest(new Uint8Array([1])))
  const mismatched = { ...body, input: otherInput }
  const other = await generateKeyPair('Ed25519')
  const stranger = { ...body, requester: peerIdFromPrivateKey(other).toString() }
  return [
    ...commonFrames(limit),
    cbor({ t: 'job', v: 1 }),
    cbor({ t: 'job', v: 2, body, sig, inputs }),
    cbor({ t: 'job', v: 1, body: {}, sig, inputs }),
    cbor({ t: 'job', v: 1, body, sig: new Uint8Array(64), inputs }), // bad signature
    cbor({ t: 'job', v: 1, body: stranger, sig: await signJob(stranger, other), inputs }), // not the sender's job
    cbor({ t: 'job', v: 1, body: { ...body, deadline: 1 }, sig, inputs }), // deadline long gone
    cbor({
      t: 'job',
      v: 1,
      body,
      sig,
      inputs: { x: { dtype: 'float32', dims: [1, 16], data: new Uint8Array(3) } },
    }),
    cbor({ t: 'job', v: 1, body, sig, inputs: { x: { dtype: 'complex', dims: [-1], data: 5 } } }),
    cbor({ t: 'job', v: 1, body: mismatched, sig: await signJob(mismatched, key), inputs }), // inputs ≠ body.input
    cbor({ t: 'result', v: 1, outputs: {}, receipt: {} }),
    cbor({ t: 'job', v: 1, body, sig, inputs, extra: 1 }),
    raw(manyArrays(32 * 1024)), // 32 KiB that decode to 32 K objects
  ]
}

/** Malformed `/peer-compute/model/1.0.0` requests (`cid` is one the tab holds). */
export function modelFrames(cid: string, limit: number): Uint8Array[] {
  return [
    ...commonFrames(limit),
    cbor({ t: 'get-manifest', v: 1, cid: 'not a cid', chunkSize: 65536 }),
    cbor({ t: 'get-manifest', v: 1, cid, chunkSize: 1000 }),
    cbor({ t: 'get-manifest', v: 2, cid, chunkSize: 65536 }),
    cbor({ t: 'get', v: 1, from: 0, count: 1 }), // a range before any manifest
    cbor({ t: 'get-manifest', v: 1, cid: `b${'a'.repeat(58)}`, chunkSize: 65536 }),
    cbor({ t: 'chunk', v: 1, index: 0, bytes: new Uint8Array(100) }),
    concat([
      cbor({ t: 'get-manifest', v: 1, cid, chunkSize: 16384 }),
      cbor({ t: 'get', v: 1, from: 7, count: 99 }),
    ]),
  ]
}

/** `n` invalid adverts, each distinct (gossipsub drops repeats by content). */
export async function invalidAdverts(key: PrivateKey, n: number): Promise<Uint8Array[]> {
  const other = await generateKeyPair('Ed25519')
  const good = (seq: number) => advertBody(key, { seq, ts: Date.now() })
  const out: Uint8Array[] = []
  for (let i = 0; i < n; i++) {
    const b = good(i + 1)
    switch (i % 8) {
      case 0:
        out.push(
          Uint8Array.from({ length: 64 }, (_, k) => (k < 4 ? (i >>> (8 * k)) & 255 : (i + k * 7) & 255)),
        )
        break
      case 1:
        out.push(dagCbor.encode({ body: b, sig: new Uint8Array(64).fill(i & 255) })) // bad signature
        break
      case 2:
        out.push(await signAdvert(b, other)) // signed by someone else
        break
      case 3:
        out.push(dagCbor.encode({ body: { ...b, eps: new Array(9).fill('wasm') }, sig: new Uint8Array(64) }))
        break
      case 4:
        out.push(dagCbor.encode({ body: { ...b, slots: -1 }, sig: new Uint8Array(64) }))
        break
      case 5:
        out.push(
          dagCbor.encode({ body: { ...b, pad: new Uint8Array(MAX_ADVERT_BYTES) }, sig: new Uint8Array(64) }),
        )
        break
      case 6:
        out.push(
          dagCbor.encode({
            body: { ...b, addrs: new Array(17).fill('/p2p-circuit') },
            sig: new Uint8Array(64),
          }),
        )
        break
      default:
        out.push(dagCbor.encode([i, 'not an advert']))
    }
  }
  return out
}

export interface FloodReport {
  streams: number
  /** Ended after the tab answered (a refusal frame or any bytes). */
  answered: number
  /** Ended by the tab without a word (reset or a bare close). */
  silent: number
  /** Could not even open (e.g. over the tab's inbound stream limit). */
  refused: number
  /** Still open at `hangMs`: the tab kept them past every limit. */
  hung: number
  /** The tab's answers by their `code` ('busy' from a stream bound, 'bad-request' from a parser…). */
  codes: Record<string, number>
  maxMs: number
  p50Ms: number
}

/**
 * Opens `n` streams of `protocol` on `conn`, `concurrency` at a time; on each sends one of `frames`,
 * closes its write side and reads until the tab ends it.
 */
export async function flood(
  conn: Connection,
  protocol: string,
  frames: Uint8Array[],
  n: number,
  o: { concurrency: number; hangMs: number },
): Promise<FloodReport> {
  const r: FloodReport = {
    streams: n,
    answered: 0,
    silent: 0,
    refused: 0,
    hung: 0,
    codes: {},
    maxMs: 0,
    p50Ms: 0,
  }
  const times: number[] = []
  let next = 0
  const one = async (i: number) => {
    const started = performance.now()
    let stream: Stream
    try {
      stream = await conn.newStream(protocol, { signal: AbortSignal.timeout(o.hangMs) })
    } catch {
      r.refused++
      return
    }
    const { outcome, code } = await exchange(stream, frames[i % frames.length]!, o.hangMs)
    r[outcome]++
    if (code) r.codes[code] = (r.codes[code] ?? 0) + 1
    times.push(performance.now() - started)
  }
  await Promise.all(
    Array.from({ length: o.concurrency }, async () => {
      while (next < n) await one(next++)
    }),
  )
  times.sort((a, b) => a - b)
  r.maxMs = Math.round(times.at(-1) ?? 0)
  r.p50Ms = Math.round(times[times.length >> 1] ?? 0)
  return r
}

async function exchange(stream: Stream, frame: Uint8Array, hangMs: number) {
  const answer: Uint8Array[] = []
  let hung = false
  const timer = setTimeout(() => {
    hung = true
    stream.abort(new Error('hung past its limit'))
  }, hangMs)
  // Iterate from the start: an iterator made after the stream closed waits for a 'close' long gone.
  const reading = (async () => {
    for await (const chunk of stream) if (answer.length < 4) answer.push(chunk.subarray())
  })().catch(() => {}) // a reset by the tab is an answer of sorts: counted below
  try {
    if (!stream.send(frame)) await stream.onDrain()
    await stream.close()
  } catch {}
  await reading
  clearTimeout(timer)
  const outcome = hung ? 'hung' : answer.length > 0 ? 'answered' : 'silent'
  return { outcome, code: codeOf(answer) } as const
}

/** The `code` of the first frame in `chunks`, if it decodes to one. */
function codeOf(chunks: Uint8Array[]): string | undefined {
  try {
    const frame = new FrameDecoder(64 * 1024).push(concat(chunks))[0]
    return typeof frame?.code === 'string' ? frame.code : undefined
  } catch {
    return undefined
  }
}

export interface HeldStream {
  /** Absent when the tab refused to open it. */
  stream?: Stream
  /** Bytes of the partial frame the tab accepted before it ended the stream (all of them if held). */
  sent: number
  /** When the tab ended the stream (ms after it opened), if it did. */
  endedMs?: number
  /** The code of the reject frame the tab answered with, if it answered one. */
  code?: string
  /** Its reason. */
  reason?: string
}

/**
 * Opens `streams` streams of `protocol`, each declaring a frame of `declared` bytes and sending the
 * first `sent` of them, then holding it open. `release()` aborts them all (a tab may keep a refused stream's read side open).
 */
export async function holdPartialFrames(
  conn: Connection,
  protocol: string,
  o: { streams: number; declared: number; sent: number },
): Promise<{ held: HeldStream[]; open(): number; release(): void }> {
  const slab = new Uint8Array(64 * 1024).fill(0x41)
  const held: HeldStream[] = []
  const one = async () => {
    const opened = performance.now()
    const stream = await conn.newStream(protocol, { signal: AbortSignal.timeout(10_000) }).catch(() => null)
    if (stream == null) {
      held.push({ sent: 0, endedMs: 0 }) // refused before it opened
      return
    }
    const h: HeldStream = { stream, sent: 0 }
    held.push(h)
    // Read what the tab answers (a reject frame, if anything), and note when it ends the stream.
    void (async () => {
      const answer = new FrameDecoder(64 * 1024)
      try {
        for await (const chunk of stream) {
          if (h.code !== undefined) continue
          const reject = answer.push(chunk)[0] as { code?: unknown; reason?: unknown } | undefined
          if (reject) {
            h.code = String(reject.code)
            h.reason = String(reject.reason)
          }
        }
      } catch {}
      h.endedMs = performance.now() - opened
    })()
    try {
      stream.send(Uint8Array.from(varint(o.declared)))
      for (let left = o.sent; left > 0 && h.endedMs === undefined; ) {
        const chunk = slab.subarray(0, Math.min(left, slab.byteLength))
        if (!stream.send(chunk)) await stream.onDrain({ signal: AbortSignal.timeout(10_000) })
        h.sent += chunk.byteLength
        left -= chunk.byteLength
      }
    } catch {
      h.endedMs ??= performance.now() - opened
    }
  }
  await Promise.all(Array.from({ length: o.streams }, one))
  return {
    held,
    open: () => held.filter((h) => h.endedMs === undefined).length,
    release() {
      for (const h of held) h.stream?.abort(new Error('released'))
    },
  }
}
