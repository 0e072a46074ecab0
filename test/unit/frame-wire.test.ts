/** Frames on the wire are @libp2p/utils' `lpStream` framing: the same bytes both ways. */
import * as dagCbor from '@ipld/dag-cbor'
import { lpStream, streamPair } from '@libp2p/utils'
import { Uint8ArrayList } from 'uint8arraylist'
import { describe, expect, it } from 'vitest'
import { encodeFrame, FrameDecoder } from '../../src/net/frame.ts'

describe('frame wire bytes', () => {
  it("are lpStream's for bodies around each varint length boundary", async () => {
    for (const n of [1, 120, 127, 128, 16_380, 16_384, 2_097_152]) {
      const msg = { t: 'x', b: new Uint8Array(n) }
      const [a, b] = await streamPair()
      const got: Uint8ArrayList[] = []
      b.addEventListener('message', (e) => void got.push(new Uint8ArrayList(e.data)))
      const body = dagCbor.encode(msg)
      await lpStream(a).write(body)
      await expect.poll(() => got.reduce((k, c) => k + c.byteLength, 0)).toBe(encodeFrame(msg).byteLength)
      const wire = new Uint8ArrayList(...got).subarray()
      // Buffer.equals: a deep toEqual over megabytes takes seconds
      expect(Buffer.from(wire).equals(encodeFrame(msg))).toBe(true)
      const [back] = new FrameDecoder(body.byteLength).push(wire)
      expect(Buffer.from(dagCbor.encode(back)).equals(body)).toBe(true)
      a.abort(new Error('done'))
      b.abort(new Error('done'))
    }
  })
})
