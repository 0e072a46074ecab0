import { afterEach, describe, expect, it, vi } from 'vitest'
import { BUSY_HOLD_MS, createScheduler, NEWCOMER_SHARE } from '../../src/jobs/scheduler.ts'
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
    s.begin('B')(true, true) // one result delivered: two slots there
    vi.advanceTimersByTime(3_000)
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

  it("holds off a peer that said 'busy' until an advert since says it has room, or BUSY_HOLD_MS", () => {
    vi.useFakeTimers({ now: 100_000 })
    const peers = [peer('B', 2, Date.now())] // its advert of 2 free slots may be seconds old
    const s = createScheduler({ peers: () => peers }, 'A')
    s.begin('B')(false) // 'busy': others filled it since
    expect(s.pick('m', new Set())).toBeUndefined()
    expect(s.freeSlots()).toBe(0)
    vi.advanceTimersByTime(BUSY_HOLD_MS)
    expect(s.pick('m', new Set())?.id).toBe('B') // tried again after the hold
    s.begin('B')(false)
    vi.advanceTimersByTime(10)
    peers[0] = peer('B', 1, Date.now()) // a fresh advert: room again
    expect(s.pick('m', new Set())?.id).toBe('B')
  })

  it('counts the slots free across direct contributors, less our own jobs there', () => {
    vi.useFakeTimers({ now: 100_000 })
    const far = { ...peer('D', 2, 0), direct: false }
    const off = peer('E', 2, 0)
    off.advert = { ...off.advert, contributing: false }
    const busy = peer('F', 0, Date.now()) // a fresh advert of no free slot: busy with others' work
    const peers = [peer('B', 2, 0), peer('C', 1, 0), far, off, busy, peer('A', 2, 0)]
    const s = createScheduler({ peers: () => peers }, 'A')
    for (const id of ['B', 'C']) s.begin(id)(true, true) // each delivered once: two slots each
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

describe('scheduler: adverts are claims', () => {
  afterEach(() => vi.useRealTimers())
  const inflated = (id: string) => {
    const p = peer(id, 64, Date.now())
    p.advert = { ...p.advert, maxSlots: 64, benchUs: 1 }
    return p
  }

  it('fills a peer only as far as it delivered recently, whatever slots it advertises', () => {
    vi.useFakeTimers({ now: 100_000 })
    const peers = [inflated('X')]
    const s = createScheduler({ peers: () => peers }, 'A')
    expect(s.slotCap(peers[0]!)).toBe(1) // a newcomer: one job at a time
    expect(s.freeSlots()).toBe(1)
    const first = s.begin('X')
    expect(s.pick('m', new Set())).toBeUndefined()
    first(true, true)
    expect(s.slotCap(peers[0]!)).toBe(2)
    s.begin('X')(true, false) // a job that did not deliver (refused, timed out) earns nothing
    expect(s.slotCap(peers[0]!)).toBe(2)
    vi.advanceTimersByTime(61_000)
    expect(s.slotCap(peers[0]!)).toBe(1) // delivery long ago counts no more
  })

  it('ranks proven peers first, newcomers on a share of picks, and ignores advertised speed', () => {
    vi.useFakeTimers({ now: 100_000 })
    let r = 0.5 // above NEWCOMER_SHARE: a normal pick
    const peers = [inflated('X'), peer('H', 2, 0)]
    const s = createScheduler({ peers: () => peers }, 'A', () => r)
    const proven = (id: string) => id === 'H'
    for (let i = 0; i < 10; i++) expect(s.pick('m', new Set(), { proven })?.id).toBe('H')
    r = NEWCOMER_SHARE / 2 // a newcomer's turn: proven-ness ignored, and X has no more free slots than H
    const picks = new Set(Array.from({ length: 20 }, () => s.pick('m', new Set(), { proven })?.id))
    expect(picks.has('H') || picks.has('X')).toBe(true)
    // Without reputation, the faster peer as we timed it wins, not the one claiming benchUs 1.
    r = 0.5
    const h = s.begin('H')
    const x = s.begin('X')
    vi.advanceTimersByTime(10)
    h(true, true)
    vi.advanceTimersByTime(500)
    x(true, true)
    expect(s.pick('m', new Set())?.id).toBe('H')
  })

  it('counts the contributors a job could go to at all, busy or not', () => {
    vi.useFakeTimers({ now: 100_000 })
    const busy = peer('F', 0, Date.now())
    const off = peer('E', 2, 0)
    off.advert = { ...off.advert, contributing: false }
    const peers = [peer('B', 2, 0), busy, off, { ...peer('D', 2, 0), direct: false }]
    const s = createScheduler({ peers: () => peers }, 'A')
    expect(s.eligible(new Set())).toBe(2) // B and F
    expect(s.eligible(new Set(['B']))).toBe(1)
    expect(s.eligible(new Set(), (id) => id !== 'F')).toBe(1)
  })
})
