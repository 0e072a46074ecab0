/**
 * patches/@libp2p+webrtc+*.patch: one data-channel message per frame, drain at half the buffer
 * limit. Runs libp2p's own stream over a fake RTCDataChannel; a second stream decodes what it sent.
 */
import { defaultLogger } from '@libp2p/logger'
import * as lengthPrefixed from 'it-length-prefixed'
import { describe, expect, it } from 'vitest'
// Internal modules (not in the package's exports): the file the patch changes, and what it uses.
import {
  MAX_BUFFERED_AMOUNT,
  PROTOBUF_OVERHEAD,
} from '../../node_modules/@libp2p/webrtc/dist/src/constants.js'
import { Message } from '../../node_modules/@libp2p/webrtc/dist/src/private-to-public/pb/message.js'
import { createStream } from '../../node_modules/@libp2p/webrtc/dist/src/stream.js'
import { MAX_DATA_CHANNEL_MESSAGE as MAX } from '../../src/net/node.ts'
import '../../node/relay/polyfill.ts'

/** The largest write that goes out as one message: the limit less the frame's prefix and header. */
const LARGEST_ONE_MESSAGE = MAX - PROTOBUF_OVERHEAD

class FakeChannel {
  readyState = 'open'
  bufferedAmount = 0
  bufferedAmountLowThreshold = -1
  binaryType = 'blob'
  id = 1
  sent: Uint8Array[] = []
  onmessage: ((e: { data: ArrayBuffer }) => void) | null = null
  onclose: (() => void) | null = null
  onerror: (() => void) | null = null
  onbufferedamountlow: (() => void) | null = null
  send(data: Uint8Array) {
    this.sent.push(data.slice())
  }
  close() {
    this.readyState = 'closed'
  }
  addEventListener() {}
  removeEventListener() {}
}

const open = (channel: FakeChannel, direction: 'inbound' | 'outbound') =>
  createStream({
    channel: channel as unknown as RTCDataChannel, // a structural stand-in
    direction,
    log: defaultLogger().forComponent('t'),
    maxMessageSize: MAX,
  })

function bytes(n: number): Uint8Array {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = (i * 31) % 251
  return out
}

/** Feeds every sent message into a fresh inbound stream (libp2p's own decoder) and reads the data. */
async function received(sent: Uint8Array[], expected: number): Promise<Uint8Array> {
  const ch = new FakeChannel()
  const rx = open(ch, 'inbound')
  for (const m of sent) ch.onmessage?.({ data: m.slice().buffer })
  const out = new Uint8Array(expected)
  let at = 0
  for await (const chunk of rx) {
    out.set(chunk.subarray(), at)
    at += chunk.byteLength
    if (at >= expected) break
  }
  expect(at).toBe(expected)
  return out
}

describe('patched @libp2p/webrtc stream', () => {
  // A 16 KiB write is one message; a write over the 256 KiB limit splits into whole frames.
  it.each([
    [16 * 1024, 1],
    [600 * 1024, 3],
  ])('sends a %i-byte write as %i data-channel message(s) that libp2p decodes', async (size, messages) => {
    const ch = new FakeChannel()
    const tx = open(ch, 'outbound')
    const data = bytes(size)
    tx.send(data)
    expect(ch.sent).toHaveLength(messages)
    for (const m of ch.sent) expect(m.byteLength).toBeLessThanOrEqual(MAX)
    expect(ch.sent.reduce((n, m) => n + m.byteLength, 0)).toBeLessThan(size + 8 * messages)
    expect(Buffer.from(await received(ch.sent, size)).equals(data)).toBe(true)
  })

  // Byte for byte what the unpatched library wrote (in two sends), across varint boundaries and up to
  // the largest frame that fits one 256 KiB message.
  it.each([1, 127, 128, 16_384, LARGEST_ONE_MESSAGE])(
    'encodes a %i-byte frame as the library did',
    (size) => {
      const ch = new FakeChannel()
      const data = bytes(size)
      open(ch, 'outbound').send(data)
      expect(ch.sent).toHaveLength(1)
      const before = lengthPrefixed.encode.single(Message.encode({ message: data })).subarray()
      expect(Buffer.from(ch.sent[0]!).equals(before)).toBe(true)
    },
  )

  it('drains at half the buffer limit: waits while the channel is full, resumes on bufferedamountlow', () => {
    const ch = new FakeChannel()
    const tx = open(ch, 'outbound')
    expect(ch.bufferedAmountLowThreshold).toBe(MAX_BUFFERED_AMOUNT / 2)
    ch.bufferedAmount = MAX_BUFFERED_AMOUNT
    expect(tx.send(bytes(1024))).toBe(false)
    expect(tx.writableNeedsDrain).toBe(true)
    let drained = 0
    tx.addEventListener('drain', () => drained++)
    ch.bufferedAmount = MAX_BUFFERED_AMOUNT / 2 // the browser fires the event at the threshold
    ch.onbufferedamountlow?.()
    expect(drained).toBe(1)
  })

  it('sends a flag as one message', () => {
    const ch = new FakeChannel()
    const tx = open(ch, 'outbound')
    tx.abort(new Error('reset'))
    expect(ch.sent).toHaveLength(1)
    expect([...ch.sent[0]!]).toEqual([2, 8, 2]) // length 2, field 1 (flag) = RESET
  })
})
