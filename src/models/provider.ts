/**
 * Provider side of `/peer-compute/model/1.0.0`: serves models we hold (hash-verified on read) as a
 * manifest and chunk ranges, with bounded concurrent uploads and backpressure. Uploads of one model
 * that overlap or follow within `holdMs` share one read: peers often fetch a new model together.
 */
import type { Connection, Logger, Stream } from '@libp2p/interface'
import type { TestHooks } from '../jobs/adversary.ts'
import type { Frame } from '../net/frame.ts'
import { createInboundGuard } from '../net/inbound.ts'
import { MODEL_PROTOCOL } from '../shared/protocol.ts'
import { FrameReader, sendBytes } from './stream.ts'
import {
  chunkDigests,
  encodeChunkFrame,
  encodeTransfer,
  MAX_ERROR_BYTES,
  MAX_REASON_LENGTH,
  MAX_REQUEST_BYTES,
  type Manifest,
  manifestLimit,
  parseManifestRequest,
  parseRangeRequest,
  type TransferErrorCode,
} from './transfer.ts'

export interface ProviderOptions {
  /** Verified bytes of a model we hold, or undefined; marks the model in use until `release`. */
  acquire(cid: string): Promise<{ bytes: Uint8Array; release(): void } | undefined>
  log: Logger
  maxUploads?: number
  idleTimeoutMs?: number
  /** How long verified bytes stay held (and the model in use) after its last upload ends. */
  holdMs?: number
  onUpload?(info: { cid: string; peer: string; bytes: number }): void
  /** Test-only (`modelTransfer.corruptChunk`), read at every chunk; honoured in the test build only. */
  testHooks?: TestHooks
}

/** Model streams one peer may hold open here: a fetch uses at most 2 per provider. */
export const MODEL_STREAMS_PER_PEER = 4

class Refusal extends Error {
  constructor(
    readonly code: TransferErrorCode,
    message: string,
  ) {
    super(message)
  }
}

interface Held {
  bytes: Promise<{ bytes: Uint8Array; release(): void } | undefined>
  users: number
  timer?: ReturnType<typeof setTimeout>
}

type Acquire = ProviderOptions['acquire']

/** What the provider's uploads share. */
interface ProviderState {
  opts: ProviderOptions
  maxUploads: number
  idle: number
  uploads: number
  acquire: Acquire
  digestsOf(cid: string, bytes: Uint8Array, chunkSize: number): Promise<Uint8Array>
}

export function createModelProvider(opts: ProviderOptions) {
  const s: ProviderState = {
    opts,
    maxUploads: opts.maxUploads ?? 4,
    idle: opts.idleTimeoutMs ?? 30_000,
    uploads: 0,
    acquire: heldModels(opts.acquire, opts.holdMs ?? 15_000),
    digestsOf: digestCache(),
  }

  // Requests are at most MAX_REQUEST_BYTES, so streams bound what a peer's partial frames hold.
  const inbound = createInboundGuard({
    streamsPerPeer: () => MODEL_STREAMS_PER_PEER,
    bytesPerPeer: Number.POSITIVE_INFINITY,
    bytesTotal: Number.POSITIVE_INFINITY,
  })

  return {
    protocol: MODEL_PROTOCOL,
    handler: (stream: Stream, connection: Connection) => {
      const peer = connection.remotePeer.toString()
      const done = inbound.open(peer)
      if (!done) {
        void refuse(
          stream,
          'busy',
          `too many model streams from one peer (at most ${MODEL_STREAMS_PER_PEER})`,
        )
        return
      }
      serve(s, stream, peer)
        .catch((err) => opts.log.error('model handler: %s', (err as Error).message))
        .finally(done)
    },
    get uploads() {
      return s.uploads
    },
  }
}

/** `acquire`, with verified bytes by CID shared by overlapping uploads and kept `holdMs` after the last one. */
function heldModels(read: Acquire, holdMs: number): Acquire {
  const held = new Map<string, Held>()
  const drop = (cid: string, h: Held) => {
    if (held.get(cid) === h) held.delete(cid)
    h.bytes.then(
      (b) => b?.release(),
      () => {},
    )
  }
  return async (cid: string) => {
    let h = held.get(cid)
    if (h == null) {
      // Asking for another model lets go of idle ones: at most one model is held idle.
      for (const [c, o] of held) {
        if (o.users > 0) continue
        clearTimeout(o.timer)
        drop(c, o)
      }
      const fresh: Held = { bytes: read(cid), users: 0 }
      held.set(cid, fresh)
      // A miss or a failed read is not kept.
      fresh.bytes.then(
        (b) => b == null && drop(cid, fresh),
        () => drop(cid, fresh),
      )
      h = fresh
    }
    const entry = h
    entry.users++
    clearTimeout(entry.timer)
    const got = await entry.bytes.catch((err: Error) => {
      entry.users--
      throw err
    })
    if (got == null) {
      entry.users--
      return undefined
    }
    let done = false
    const release = () => {
      if (done) return
      done = true
      if (--entry.users === 0) entry.timer = setTimeout(() => drop(cid, entry), holdMs)
    }
    return { bytes: got.bytes, release }
  }
}

/** Chunk digests by `cid/chunkSize`, computed from verified bytes, so repeat uploads skip a hashing pass. */
function digestCache(): ProviderState['digestsOf'] {
  const digests = new Map<string, Uint8Array>()
  return async (cid, bytes, chunkSize) => {
    const key = `${cid}/${chunkSize}`
    let d = digests.get(key)
    if (d == null) {
      d = await chunkDigests(bytes, chunkSize)
      if (digests.size >= 16) digests.delete(digests.keys().next().value!)
      digests.set(key, d)
    }
    return d
  }
}

async function serve(s: ProviderState, stream: Stream, peer: string): Promise<void> {
  const { opts, idle } = s
  const reader = new FrameReader(stream, MAX_REQUEST_BYTES)
  let release: (() => void) | undefined
  let counted = false
  let sent = 0
  let cid = ''
  try {
    const first = await reader.next(idle)
    if (first == null) return
    const req = parseManifestRequest(first)
    cid = req.cid
    if (s.uploads >= s.maxUploads) throw new Refusal('busy', `already serving ${s.uploads} uploads`)
    s.uploads++ // counted before the first await, so concurrent requests cannot overshoot
    counted = true
    const got = await s.acquire(cid)
    if (got == null) throw new Refusal('unknown-model', `model ${cid} is not cached here`)
    release = got.release
    const { bytes } = got
    const manifest: Manifest = {
      t: 'manifest',
      v: 1,
      cid,
      size: bytes.byteLength,
      chunkSize: req.chunkSize,
      digests: await s.digestsOf(cid, bytes, req.chunkSize),
    }
    await sendBytes(stream, encodeTransfer(manifest, manifestLimit(bytes.byteLength, req.chunkSize)))
    for (;;) {
      const frame: Frame | null = await reader.next(idle)
      if (frame == null) break // the fetcher has all it wants
      const range = parseRangeRequest(frame, manifest)
      for (let i = range.from; i < range.from + range.count; i++) {
        let chunk = bytes.subarray(i * req.chunkSize, (i + 1) * req.chunkSize)
        if (__PC_TEST_HOOKS__ && opts.testHooks?.modelTransfer?.corruptChunk?.(cid, i)) {
          chunk = chunk.slice()
          chunk[0] = chunk[0]! ^ 0xff
        }
        await sendBytes(stream, encodeChunkFrame(i, chunk))
        sent += chunk.byteLength
      }
    }
    await stream.close()
  } catch (err) {
    const code = err instanceof Refusal ? err.code : codeOf(err as Error)
    opts.log('model upload of %s to %s failed (%s): %s', cid, peer, code, (err as Error).message)
    await refuse(stream, code, (err as Error).message)
  } finally {
    if (counted) s.uploads--
    release?.()
    if (sent > 0) opts.onUpload?.({ cid, peer, bytes: sent })
  }
}

const codeOf = (err: Error): TransferErrorCode =>
  err.name === 'MalformedFrameError' || err.name === 'FrameTooLargeError' ? 'bad-request' : 'internal'

async function refuse(stream: Stream, code: TransferErrorCode, reason: string): Promise<void> {
  try {
    if (stream.writeStatus !== 'writable') return
    const msg = { t: 'error', v: 1, code, reason: reason.slice(0, MAX_REASON_LENGTH) } as const
    await sendBytes(stream, encodeTransfer(msg, MAX_ERROR_BYTES), AbortSignal.timeout(5000))
    await stream.close({ signal: AbortSignal.timeout(5000) })
  } catch {
    stream.abort(new Error('could not deliver refusal'))
  }
}
export type ModelProvider = ReturnType<typeof createModelProvider>
