/**
 * `/peer-compute/model/1.0.0` over in-memory stream pairs: message validation, a whole fetch, chunks split
 * across two providers, a corrupt chunk fetched again, resume after abort, a lying manifest, and limits.
 */
import type { Connection, Stream } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { streamPair } from '@libp2p/utils'
import { beforeAll, describe, expect, it, vi } from 'vitest'
import type { TestHooks } from '../../src/jobs/adversary.ts'
import { type ChunkStore, type FetchOptions, fetchFromPeers } from '../../src/models/fetcher.ts'
import { createModelProvider, MODEL_STREAMS_PER_PEER } from '../../src/models/provider.ts'
import {
  chunkDigests,
  chunkMatches,
  encodeChunkFrame,
  encodeTransfer,
  isChunkSize,
  type Manifest,
  parseChunk,
  parseManifest,
  parseManifestRequest,
  parseRangeRequest,
  parseTransferBody,
} from '../../src/models/transfer.ts'
import { encodeFrame, FrameDecoder } from '../../src/net/frame.ts'
import { modelCid } from '../../src/shared/cid.ts'
import { MODEL_PROTOCOL } from '../../src/shared/protocol.ts'

const KiB = 1024
const log = logger('peer-compute:test:models')

function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n)
  let x = seed
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0
    out[i] = x >>> 24
  }
  return out
}

function memChunks(): ChunkStore & { count(cid: string): number } {
  const all = new Map<string, Map<number, Uint8Array>>()
  const of = (cid: string) => all.get(cid) ?? all.set(cid, new Map()).get(cid)!
  return {
    load: async (cid) => new Map(of(cid)),
    save: async (cid, cs) => {
      for (const c of cs) of(cid).set(c.index, c.bytes)
    },
    clear: async (cid) => void all.delete(cid),
    count: (cid) => of(cid).size,
  }
}

type Provider = ReturnType<typeof createModelProvider>
/** A provider that holds `models` (or serves `lie` for any CID) with upload counting. */
function provider(
  models: Record<string, Uint8Array>,
  opts: {
    lie?: Uint8Array
    maxUploads?: number
    reads?: string[]
    released?: string[]
    testHooks?: TestHooks
  } = {},
) {
  return createModelProvider({
    log,
    ...(opts.testHooks ? { testHooks: opts.testHooks } : {}),
    ...(opts.maxUploads !== undefined ? { maxUploads: opts.maxUploads } : {}),
    holdMs: 50,
    acquire: async (cid) => {
      opts.reads?.push(cid)
      const bytes = opts.lie ?? models[cid]
      return bytes && { bytes, release: () => opts.released?.push(cid) }
    },
  })
}

const fetcherConn = { remotePeer: { toString: () => 'fetcher' } } as unknown as Connection

function openVia(providers: Record<string, Provider>): FetchOptions['open'] {
  return async (peer, signal) => {
    signal.throwIfAborted()
    const p = providers[peer]
    if (p == null) throw new Error(`no connection to ${peer}`)
    const [out, inbound] = await streamPair({ protocol: MODEL_PROTOCOL })
    p.handler(inbound, fetcherConn)
    return out
  }
}

describe('model transfer messages', () => {
  const manifest = (size: number, chunkSize: number, digests: number) => ({
    t: 'manifest',
    v: 1,
    cid: 'bafkreidyllbzbuwb2fdgttvsc6notidx5yr5wgl6z2qhcptapjy3pkxbja',
    size,
    chunkSize,
    digests: new Uint8Array(digests * 32),
  })
  const want = {
    cid: 'bafkreidyllbzbuwb2fdgttvsc6notidx5yr5wgl6z2qhcptapjy3pkxbja',
    chunkSize: 64 * KiB,
    maxBytes: 1024 * KiB,
  }

  it('accepts chunk sizes that are powers of two from 16 KiB to 4 MiB', () => {
    expect([16 * KiB, 64 * KiB, 256 * KiB, 4096 * KiB].every(isChunkSize)).toBe(true)
    expect([8 * KiB, 48 * KiB, 8192 * KiB, 65.5 * KiB].some(isChunkSize)).toBe(false)
    expect(() =>
      parseManifestRequest({ t: 'get-manifest', v: 1, cid: want.cid, chunkSize: 100_000 }),
    ).toThrow(/chunkSize/)
    expect(() =>
      parseManifestRequest({ t: 'get-manifest', v: 1, cid: 'not a cid', chunkSize: 65536 }),
    ).toThrow(/cid/)
  })

  it('checks a manifest against the CID, chunk size, size limit and digest count', () => {
    expect(parseManifest(manifest(100 * KiB, 64 * KiB, 2), want).size).toBe(100 * KiB)
    expect(() => parseManifest(manifest(100 * KiB, 64 * KiB, 3), want)).toThrow(
      /one 32-byte digest per chunk/,
    )
    expect(() => parseManifest(manifest(100 * KiB, 32 * KiB, 4), want)).toThrow(/chunk size asked for/)
    expect(() => parseManifest({ ...manifest(10, 64 * KiB, 1), cid: 'bafkreiother' }, want)).toThrow(/CID/)
    expect(() => parseManifest(manifest(2048 * KiB, 64 * KiB, 32), want)).toThrow(
      expect.objectContaining({ name: 'ModelTooLargeError' }),
    )
    expect(() => parseManifest({ ...manifest(10, 64 * KiB, 1), extra: 1 }, want)).toThrow(/exactly/)
  })

  it('checks chunk index, length and range requests', () => {
    const m = manifest(100 * KiB, 64 * KiB, 2) as Manifest
    const chunk = (index: number, n: number) => ({ t: 'chunk', v: 1, index, bytes: new Uint8Array(n) })
    expect(parseChunk(chunk(1, 36 * KiB), m, 1).index).toBe(1) // the last chunk is shorter
    expect(() => parseChunk(chunk(0, 64 * KiB), m, 1)).toThrow(/expected 1/)
    expect(() => parseChunk(chunk(1, 64 * KiB), m, 1)).toThrow(/36864 bytes/)
    expect(parseRangeRequest({ t: 'get', v: 1, from: 0, count: 2 }, m).count).toBe(2)
    expect(() => parseRangeRequest({ t: 'get', v: 1, from: 1, count: 2 }, m)).toThrow(/past the last/)
    expect(() => parseRangeRequest({ t: 'get', v: 1, from: 0, count: 0 }, m)).toThrow(/count/)
    expect(() => parseRangeRequest({ t: 'get', v: 1, from: 0, count: 65 }, m)).toThrow(/count/)
  })

  it('encodes a chunk frame byte for byte as the dag-cbor codec does', () => {
    for (const n of [0, 23, 24, 255, 256, 65535, 65536, 256 * KiB])
      for (const index of [0, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1]) {
        const bytes = randomBytes(n, index + n)
        const want = encodeTransfer({ t: 'chunk', v: 1, index, bytes }, Number.POSITIVE_INFINITY)
        expect(same(encodeChunkFrame(index, bytes), want)).toBe(true)
      }
  })

  it('reads a chunk frame in place, split anywhere, and leaves other encodings to dag-cbor', () => {
    const bytes = randomBytes(300, 5)
    const body = (f: Uint8Array) => f.subarray(f.findIndex((b) => b < 0x80) + 1) // drop the varint
    const frame = body(encodeChunkFrame(70_000, bytes))
    const m = { size: 70_000 * 300 + 300, chunkSize: 300 } as Manifest
    for (const cut of [0, 1, 7, 20, 150, frame.length - 4, frame.length - 1]) {
      const parts = [frame.subarray(0, cut), frame.subarray(cut)].filter((p) => p.length > 0)
      const chunk = parseChunk(parseTransferBody(parts), m, 70_000)
      expect(same(Buffer.concat(chunk.parts), bytes)).toBe(true)
      for (const p of chunk.parts) expect(p.buffer).toBe(frame.buffer) // views, not copies
    }
    // Other frames, and chunk frames with other fields, go to dag-cbor and the usual checks.
    const other = body(encodeTransfer({ t: 'get', v: 1, from: 1, count: 2 }, 1e6))
    expect(parseTransferBody([other])).toEqual({ t: 'get', v: 1, from: 1, count: 2 })
    const extra = body(encodeFrame({ t: 'chunk', v: 1, index: 2, bytes: bytes.subarray(0, 10), x: 1 }))
    expect(() => parseChunk(parseTransferBody([extra]), m, 2)).toThrow(/exactly t, v/)
    const trailing = Uint8Array.from([...frame, 0])
    expect(() => parseTransferBody([trailing])).toThrow(/dag-cbor/)
    // A byte-string length not in its shortest form (0x59 0x00 0x0a for 10) is not the fast layout,
    // and dag-cbor refuses it too.
    const short = body(encodeChunkFrame(2, bytes.subarray(0, 10)))
    const at = short.indexOf(0x4a) // the 1-byte head of a 10-byte string
    const loose = Uint8Array.from([...short.subarray(0, at), 0x59, 0x00, 0x0a, ...short.subarray(at + 1)])
    expect(() => parseTransferBody([loose])).toThrow(/dag-cbor/)
  })

  it('matches chunks against their digests', async () => {
    const bytes = randomBytes(100 * KiB, 1)
    const m = {
      ...manifest(bytes.length, 64 * KiB, 2),
      digests: await chunkDigests(bytes, 64 * KiB),
    } as Manifest
    expect(await chunkMatches(m, 1, bytes.subarray(64 * KiB))).toBe(true)
    const bad = bytes.slice(64 * KiB)
    bad[5] = bad[5]! ^ 1
    expect(await chunkMatches(m, 1, bad)).toBe(false)
  })
})

describe('model transfer over in-memory streams', () => {
  const bytes = randomBytes(1024 * KiB + 123, 7)
  let cid = ''
  const fetch = async (o: Partial<FetchOptions> & Pick<FetchOptions, 'providers' | 'open'>) =>
    fetchFromPeers({ cid, chunks: memChunks(), maxBytes: 8 * 1024 * KiB, chunkSize: 64 * KiB, ...o })

  beforeAll(async () => {
    cid = (await modelCid(bytes)).toString()
  })

  it('fetches a whole model from one provider and checks its CID', async () => {
    const { bytes: got, stats } = await fetch({
      providers: ['a'],
      open: openVia({ a: provider({ [cid]: bytes }) }),
    })
    expect((await modelCid(got)).toString()).toBe(cid)
    expect(stats).toMatchObject({ size: bytes.length, transferred: bytes.length, resumed: 0, corrupt: 0 })
  })

  it('asks for contiguous chunks in ranges, not one by one', async () => {
    let sends = 0
    const inner = openVia({ a: provider({ [cid]: bytes }) })
    const open: FetchOptions['open'] = async (peer, signal) => {
      const s = await inner(peer, signal)
      const send = s.send.bind(s)
      s.send = (b) => {
        sends++
        return send(b)
      }
      return s
    }
    await fetch({ providers: ['a'], open })
    expect(sends).toBe(2) // get-manifest, then one get for all 17 chunks (2 MiB per get)
  })

  it('reads a model once for back-to-back uploads, and lets it go after holdMs', async () => {
    const reads: string[] = []
    const released: string[] = []
    const open = openVia({ a: provider({ [cid]: bytes }, { reads, released }) })
    await fetch({ providers: ['a'], open })
    await fetch({ providers: ['a'], open })
    expect(reads).toEqual([cid])
    expect(released).toEqual([])
    await new Promise((r) => setTimeout(r, 120))
    expect(released).toEqual([cid])
    await fetch({ providers: ['a'], open })
    expect(reads).toEqual([cid, cid])
  })

  it('splits chunks across two providers', async () => {
    const big = randomBytes(8 * 1024 * KiB, 3) // more than one provider's window of ranges
    const bigCid = (await modelCid(big)).toString()
    const open = openVia({ a: provider({ [bigCid]: big }), b: provider({ [bigCid]: big }) })
    const { bytes: got, stats } = await fetch({ cid: bigCid, providers: ['a', 'b'], open, parallel: 2 })
    expect(same(got, big)).toBe(true)
    expect(stats.providers.a! + stats.providers.b!).toBe(big.length)
    expect(stats.providers.b).toBeGreaterThan(0)
  })

  // A WebRTC data channel that closes while opening fails its libp2p stream with a bare Event.
  it('opens a link again when its stream fails with a bare Event', async () => {
    const inner = openVia({ a: provider({ [cid]: bytes }) })
    let opens = 0
    const open: FetchOptions['open'] = async (peer, signal) => {
      if (opens++ === 0) throw new Event('close')
      return inner(peer, signal)
    }
    const { bytes: got, stats } = await fetch({ providers: ['a'], open })
    expect(same(got, bytes)).toBe(true)
    expect(opens).toBe(2)
    expect(stats.providers).toEqual({ a: bytes.length })
  })

  // Should a link fail so after chunks arrived, the next link asks only for the rest.
  it('keeps the chunks of a link that failed mid-transfer and asks the next link for the rest', async () => {
    const p = provider({ [cid]: bytes })
    const sent: number[] = [] // chunk frames each link delivered
    const open: FetchOptions['open'] = async () => {
      const link = sent.push(0) - 1
      const [out, inbound] = await streamPair({ protocol: MODEL_PROTOCOL })
      const send = inbound.send.bind(inbound)
      inbound.send = (b) => {
        if (b.byteLength < 32 * KiB) return send(b)
        if (link === 0 && sent[0] === 3) {
          out.abort(new Event('close') as unknown as Error) // after 3 chunks
          return true
        }
        sent[link]!++
        return send(b)
      }
      p.handler(inbound, fetcherConn)
      return out
    }
    const { bytes: got, stats } = await fetch({ providers: ['a'], open })
    expect(same(got, bytes)).toBe(true)
    // 16 full chunks (the 17th, of 123 B, is not counted): the second link sent only the 13 missing
    expect(sent).toEqual([3, 13])
    expect(stats.transferred).toBe(bytes.length)
  })

  it('gives up on a provider whose second link fails too, and says why', async () => {
    let opens = 0
    const open: FetchOptions['open'] = async () => {
      opens++
      throw new Event('close')
    }
    await expect(fetch({ providers: ['a'], open })).rejects.toThrow(
      expect.objectContaining({
        name: 'ModelTransferError',
        message: expect.stringContaining("a: stream failed: 'close' event"),
      }),
    )
    expect(opens).toBe(2)
  })

  it('detects a corrupt chunk and fetches it again', async () => {
    let corrupted = 0
    const corruptChunk = (_: string, i: number) => i === 3 && corrupted++ === 0 // once
    const { bytes: got, stats } = await fetch({
      providers: ['a'],
      open: openVia({ a: provider({ [cid]: bytes }, { testHooks: { modelTransfer: { corruptChunk } } }) }),
    })
    expect(same(got, bytes)).toBe(true)
    expect(stats.corrupt).toBe(1)
    expect(stats.transferred).toBe(bytes.length + 64 * KiB)
  })

  it('checks a sample of chunks; a bad one that was not sampled fails the CID, is found and fetched again', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.99) // sample nothing beyond each provider's first chunks
    try {
      let corrupted = 0
      const corruptChunk = (_: string, i: number) => i === 9 && corrupted++ === 0
      const { bytes: got, stats } = await fetch({
        providers: ['a'],
        open: openVia({ a: provider({ [cid]: bytes }, { testHooks: { modelTransfer: { corruptChunk } } }) }),
      })
      expect(same(got, bytes)).toBe(true)
      expect(corrupted).toBe(2) // sent corrupt once, then asked for again
      expect(stats).toMatchObject({ corrupt: 1, providers: { a: bytes.length } })
      expect(stats.transferred).toBe(bytes.length + 64 * KiB)
    } finally {
      vi.restoreAllMocks()
    }
  })

  it('drops a provider with more than three bad chunks; the other provider completes the model', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.99)
    try {
      const big = randomBytes(8 * 1024 * KiB, 4)
      const bigCid = (await modelCid(big)).toString()
      const providers = { bad: provider({ [bigCid]: big }), good: provider({ [bigCid]: big }) }
      const opened: string[] = []
      const open: FetchOptions['open'] = async (peer) => {
        opened.push(peer)
        const [out, inbound] = await streamPair({ protocol: MODEL_PROTOCOL })
        if (peer === 'bad') {
          // Its first two chunks are sound (and checked); every later one has a byte flipped.
          const send = inbound.send.bind(inbound)
          let chunks = 0
          inbound.send = (b) => {
            if (b.byteLength < 32 * KiB || chunks++ < 2) return send(b)
            const c = b.subarray().slice()
            c[500] = c[500]! ^ 1
            return send(c)
          }
        }
        providers[peer as keyof typeof providers].handler(inbound, fetcherConn)
        return out
      }
      const { bytes: got, stats } = await fetch({
        cid: bigCid,
        providers: ['bad', 'good'],
        open,
        parallel: 2,
      })
      expect(same(got, big)).toBe(true)
      expect(stats.corrupt).toBeGreaterThan(3)
      expect(stats.providers).toEqual({ bad: 2 * 64 * KiB, good: big.length - 2 * 64 * KiB })
      expect(opened.filter((p) => p === 'bad')).toEqual(['bad']) // not asked again
    } finally {
      vi.restoreAllMocks()
    }
  })

  it('resumes an aborted transfer from the chunks it saved', async () => {
    const chunks = memChunks()
    const open = openVia({ a: provider({ [cid]: bytes }) })
    const ac = new AbortController()
    const first = fetch({
      providers: ['a'],
      open,
      chunks,
      signal: ac.signal,
      onProgress: (p) => p.loaded > p.total * 0.4 && ac.abort(),
    })
    await expect(first).rejects.toMatchObject({ name: 'AbortError' })
    expect(chunks.count(cid)).toBeGreaterThan(5)
    const { bytes: got, stats } = await fetch({ providers: ['a'], open, chunks })
    expect(same(got, bytes)).toBe(true)
    expect(stats.resumed).toBeGreaterThan(bytes.length * 0.4)
    expect(stats.transferred).toBe(bytes.length - stats.resumed)
  })

  it('blames a provider whose manifest describes other bytes, then uses the next one', async () => {
    const liar = provider({}, { lie: randomBytes(bytes.length, 99) })
    const open = openVia({ liar, honest: provider({ [cid]: bytes }) })
    const { bytes: got, stats } = await fetch({ providers: ['liar', 'honest'], open, parallel: 1 })
    expect(same(got, bytes)).toBe(true)
    expect(Object.keys(stats.providers)).toContain('honest')
  })

  it('refuses a manifest over the size limit before asking for chunks', async () => {
    const open = openVia({ a: provider({ [cid]: bytes }) })
    await expect(fetch({ providers: ['a'], open, maxBytes: 512 * KiB })).rejects.toMatchObject({
      name: 'ModelTooLargeError',
    })
  })

  it('gives UnknownModelError when no provider has the model', async () => {
    const open = openVia({ a: provider({}), b: provider({}) })
    await expect(fetch({ providers: ['a', 'b'], open })).rejects.toMatchObject({ name: 'UnknownModelError' })
  })

  it('reports providers that lack the model or are busy', async () => {
    const open = openVia({ a: provider({}), b: provider({ [cid]: bytes }, { maxUploads: 0 }) })
    const err = await fetch({ providers: ['a', 'b'], open }).catch((e: Error) => e)
    expect(err).toMatchObject({ name: 'ModelTransferError' })
    expect((err as Error).message).toMatch(/unknown-model.*busy/s)
  })

  it('answers an out-of-range request with bad-request', async () => {
    const [out, inbound] = await streamPair({ protocol: MODEL_PROTOCOL })
    provider({ [cid]: bytes }).handler(inbound, fetcherConn)
    out.send(encodeFrame({ t: 'get-manifest', v: 1, cid, chunkSize: 64 * KiB }))
    out.send(encodeFrame({ t: 'get', v: 1, from: 17, count: 1 }))
    const frames = await readAll(out, 64 * KiB)
    expect(frames.map((f) => f.t)).toEqual(['manifest', 'error'])
    expect(frames[1]).toMatchObject({ code: 'bad-request' })
  })
})

describe('model protocol bounds', () => {
  it(`refuses a peer's streams past ${MODEL_STREAMS_PER_PEER} at once with busy`, async () => {
    const p = provider({})
    const held: Stream[] = []
    for (let i = 0; i < MODEL_STREAMS_PER_PEER; i++) {
      const [out, inbound] = await streamPair({ protocol: MODEL_PROTOCOL })
      p.handler(inbound, fetcherConn) // silent: each holds its stream until the idle timeout
      held.push(out)
    }
    const [out, inbound] = await streamPair({ protocol: MODEL_PROTOCOL })
    p.handler(inbound, fetcherConn)
    const frames = await readAll(out, 64 * KiB)
    expect(frames).toMatchObject([{ t: 'error', code: 'busy' }])
    for (const s of held) s.abort(new Error('done'))
  })
})

/** Byte equality without vitest's element-by-element diff, which is slow on megabytes. */
const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(a, b) === 0

async function readAll(stream: Stream, limit: number) {
  const decoder = new FrameDecoder(limit)
  const frames = []
  for await (const chunk of stream) frames.push(...decoder.push(chunk))
  return frames
}
