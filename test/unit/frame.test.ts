import * as dagCbor from '@ipld/dag-cbor'
import { describe, expect, it } from 'vitest'
import { encodeFrame, type Frame, FrameDecoder, readFrame } from '../../src/net/frame.ts'
import { concat as join } from '../../src/shared/bytes.ts'

const concat = (...parts: Uint8Array[]) => join(parts)

/** Raw frame with an arbitrary body, bypassing encodeFrame's checks. */
const rawFrame = (body: Uint8Array) => concat(Uint8Array.of(body.byteLength), body)

const errorOf = (fn: () => unknown): Error => {
  try {
    fn()
  } catch (err) {
    return err as Error
  }
  throw new Error('expected a throw')
}

async function* chunks(...parts: Uint8Array[]) {
  for (const p of parts) yield p
}

const a: Frame = { t: 'job', v: 1, blob: new Uint8Array(300).fill(7) }
const b: Frame = { t: 'reject', v: 1, code: 'busy', reason: 'full' }

describe('frame codec', () => {
  it('round trips one frame', () => {
    const bytes = encodeFrame(a)
    expect(bytes[0]! & 0x80).toBe(0x80) // 300+ bytes needs a 2-byte varint
    expect(new FrameDecoder(1024).push(bytes)).toEqual([a])
  })

  it('decodes several frames in one chunk', () => {
    const frames = new FrameDecoder(1024).push(concat(encodeFrame(a), encodeFrame(b), encodeFrame(a)))
    expect(frames).toEqual([a, b, a])
  })

  it('decodes a frame split byte by byte', () => {
    const dec = new FrameDecoder(1024)
    const bytes = concat(encodeFrame(a), encodeFrame(b))
    const out: Frame[] = []
    for (const byte of bytes) out.push(...dec.push(Uint8Array.of(byte)))
    expect(out).toEqual([a, b])
    expect(dec.idle).toBe(true)
  })

  it('accepts Uint8ArrayList-like chunks', () => {
    const bytes = encodeFrame(b)
    expect(new FrameDecoder(1024).push({ subarray: () => bytes })).toEqual([b])
  })

  it('rejects an oversized declared length before the body arrives', () => {
    const dec = new FrameDecoder(100)
    const err = errorOf(() => dec.push(Uint8Array.of(0xe8, 0x07))) // 1000, no body bytes sent
    expect(err.name).toBe('FrameTooLargeError')
    expect(err.message).toMatch(/1000.*100/)
    expect(() => dec.push(Uint8Array.of(1))).toThrow(expect.objectContaining({ name: 'FrameTooLargeError' }))
    expect(() => encodeFrame(a, 100)).toThrow(expect.objectContaining({ name: 'FrameTooLargeError' }))
  })

  it('rejects bad varints and zero-length frames', () => {
    const cases = [
      Uint8Array.of(0x80, 0x80, 0x80, 0x80, 0x80), // longer than 5 bytes
      Uint8Array.of(0x85, 0x00), // non-minimal
      Uint8Array.of(0x00), // zero-length
    ]
    for (const bytes of cases) {
      expect(errorOf(() => new FrameDecoder(2 ** 40).push(bytes)).name).toBe('MalformedFrameError')
    }
  })

  it('rejects bodies that are not a dag-cbor map with a string t', () => {
    const bodies = [
      Uint8Array.of(0xff, 0xff), // not cbor
      dagCbor.encode([1, 2]),
      dagCbor.encode('t'),
      dagCbor.encode({ v: 1 }),
      dagCbor.encode({ t: 5 }),
      concat(dagCbor.encode({ t: 'x' }), Uint8Array.of(0)), // trailing byte
    ]
    for (const body of bodies) {
      expect(errorOf(() => new FrameDecoder(1024).push(rawFrame(body))).name).toBe('MalformedFrameError')
    }
  })

  it('readFrame keeps frames and leftovers that share a chunk', async () => {
    const fa = encodeFrame(a)
    const fb = encodeFrame(b)
    const src = chunks(concat(fa, fb.subarray(0, 3)), fb.subarray(3), concat(fa, fb))
    const dec = new FrameDecoder(1024)
    const got: (Frame | null)[] = []
    for (let i = 0; i < 5; i++) got.push(await readFrame(src, dec))
    expect(got).toEqual([a, b, a, b, null])
  })

  it('readFrame reuses one iterator per source', async () => {
    let iterations = 0
    const source = {
      [Symbol.asyncIterator]() {
        iterations++
        return chunks(concat(encodeFrame(a), encodeFrame(b)))
      },
    }
    const dec = new FrameDecoder(1024)
    expect(await readFrame(source, dec)).toEqual(a)
    expect(await readFrame(source, new FrameDecoder(1024))).toBeNull() // b sits in the first decoder
    expect(await readFrame(source, dec)).toEqual(b)
    expect(iterations).toBe(1)
  })

  it('readFrame throws when the stream ends mid-frame', async () => {
    const fa = encodeFrame(a)
    for (const cut of [1, 2, 10]) {
      const err = await readFrame(chunks(fa.subarray(0, cut)), new FrameDecoder(1024)).catch((e: Error) => e)
      expect((err as Error).name).toBe('MalformedFrameError')
    }
  })
})
