/** Per-peer bounds on inbound streams and partial-frame bytes, and the frame decoder drawing on them. */
import { describe, expect, it } from 'vitest'
import { encodeFrame, FrameDecoder } from '../../src/net/frame.ts'
import { createInboundGuard } from '../../src/net/inbound.ts'

const limits = { streamsPerPeer: () => 2, bytesPerPeer: 100, bytesTotal: 150 }

describe('inbound guard', () => {
  it('gives each peer a bounded number of streams, back when released', () => {
    const g = createInboundGuard(limits)
    const a = g.open('A')
    const b = g.open('A')
    expect(a && b).toBeTruthy()
    expect(g.open('A')).toBeUndefined()
    expect(g.open('B')).toBeTruthy() // another peer has its own bound
    a!()
    a!() // a second release changes nothing
    expect(g.held('A').streams).toBe(1)
    expect(g.open('A')).toBeTruthy()
  })

  it('bounds partial-frame bytes per peer and in total', () => {
    const g = createInboundGuard(limits)
    const a = g.budget('A')
    const b = g.budget('B')
    expect(a.take(100)).toBe(true)
    expect(a.take(1)).toBe(false)
    expect(b.take(60)).toBe(false) // 160 in total would pass 150
    expect(b.take(50)).toBe(true)
    a.give(100)
    expect(g.held()).toEqual({ streams: 0, bytes: 50 })
    expect(a.take(90)).toBe(true)
  })

  it('a decoder takes bytes as they arrive and gives them back as frames complete or the stream goes', () => {
    const g = createInboundGuard({ streamsPerPeer: () => 4, bytesPerPeer: 64, bytesTotal: 64 })
    const frame = encodeFrame({ t: 'x', pad: 'a'.repeat(20) })
    const d = new FrameDecoder(1024, undefined, g.budget('A'))
    d.push(frame.subarray(0, 10))
    expect(g.held('A').bytes).toBe(9) // the 1-byte length is read and given back at once
    expect(d.push(frame.subarray(10))).toHaveLength(1)
    expect(g.held('A').bytes).toBe(0)
    d.push(frame.subarray(0, 10))
    d.dispose() // the stream closed mid-frame
    expect(g.held('A').bytes).toBe(0)
    const greedy = new FrameDecoder(1024, undefined, g.budget('A'))
    expect(() => greedy.push(new Uint8Array(65).fill(0x80))).toThrow(/memory bound/)
    expect(g.held('A').bytes).toBe(0)
  })
})
