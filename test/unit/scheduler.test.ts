import { afterEach, describe, expect, it, vi } from 'vitest'
import { createScheduler } from '../../src/jobs/scheduler.ts'
import type { KnownPeer } from '../../src/net/discovery.ts'

const peer = (id: string, slots: number, seenAt: number): KnownPeer => ({
  id,
  seenAt,
  firstSeenAt: 0,
  direct: true,
  advert: {
    v: 1,
    peer: id,
    addrs: [],
    seq: 1,
    ts: seenAt,
    eps: ['wasm'],
    adapter: 'none',
    threads: 1,
    slots,
    maxSlots: 2,
    contributing: true,
    models: [],
    benchUs: 0,
    version: '0.1.0',
    ort: '1.30.0',
  },
})

describe('scheduler: free slots between throttled adverts', () => {
  afterEach(() => vi.useRealTimers())

  it('takes "no free slot" as busy elsewhere only from an advert seen well after our last job there ended', () => {
    vi.useFakeTimers({ now: 100_000 })
    const peers = [peer('B', 0, 0)]
    const s = createScheduler({ peers: () => peers }, 'A')
    const done = s.begin('B')
    expect(s.pick('m', new Set())?.id).toBe('B') // ours: the advert's 0 counts our own job
    done()
    peers[0] = peer('B', 0, Date.now() + 200) // may still count the job that just ended
    expect(s.pick('m', new Set())?.id).toBe('B')
    vi.advanceTimersByTime(3_000)
    peers[0] = peer('B', 0, Date.now()) // seen long after: someone else's work
    expect(s.pick('m', new Set())).toBeUndefined()
    peers[0] = peer('B', 1, Date.now())
    expect(s.pick('m', new Set())?.id).toBe('B')
  })

  it('does not let a busy refusal hide a peer that is busy elsewhere', () => {
    vi.useFakeTimers({ now: 100_000 })
    const peers = [peer('B', 0, 0)]
    const s = createScheduler({ peers: () => peers }, 'A')
    vi.advanceTimersByTime(5_000)
    peers[0] = peer('B', 0, Date.now())
    expect(s.pick('m', new Set())).toBeUndefined()
    s.begin('B')(false) // a 'busy' reply: it held no slot there
    expect(s.pick('m', new Set())).toBeUndefined()
  })

  it('counts the slots free across direct contributors, less our own jobs there', () => {
    vi.useFakeTimers({ now: 100_000 })
    const far = { ...peer('D', 2, 0), direct: false }
    const off = peer('E', 2, 0)
    off.advert = { ...off.advert, contributing: false }
    const busy = peer('F', 0, Date.now()) // a fresh advert of no free slot: busy with others' work
    const peers = [peer('B', 2, 0), peer('C', 1, 0), far, off, busy, peer('A', 2, 0)]
    const s = createScheduler({ peers: () => peers }, 'A')
    // B 2 + C 2 (maxSlots less our jobs: a non-zero advert is not a cap); not D (relayed), E (off),
    // F (busy elsewhere) or A (us)
    expect(s.freeSlots()).toBe(4)
    expect(s.freeSlots((id) => id !== 'C')).toBe(2) // the reputation gate
    const done = s.begin('B')
    s.begin('C')
    s.begin('C')
    expect(s.freeSlots()).toBe(1)
    done()
    expect(s.freeSlots()).toBe(2)
  })
})
