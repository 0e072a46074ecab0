import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { settleSlots } from '../../src/compute/settled-slots.ts'

describe('settled free slots', () => {
  beforeEach(() => vi.useFakeTimers())
  afterEach(() => vi.useRealTimers())

  const setup = (start: number) => {
    let free = start
    const s = settleSlots({ read: () => free, settleMs: 1000 })
    const seen: number[] = []
    s.events.addEventListener('change', () => seen.push(s.value))
    const to = (n: number) => {
      free = n
      s.update()
    }
    return { s, seen, to }
  }

  it('takes a drop at once and a rise only after it held for settleMs', () => {
    const { s, seen, to } = setup(1)
    to(0)
    expect(s.value).toBe(0)
    to(1)
    vi.advanceTimersByTime(999)
    expect(s.value).toBe(0)
    vi.advanceTimersByTime(1)
    expect(s.value).toBe(1)
    expect(seen).toEqual([0, 1])
  })

  it('stays at its low while the count flips with every job', () => {
    const { seen, to } = setup(1)
    to(0)
    for (let i = 0; i < 100; i++) {
      to(1) // a job ended
      vi.advanceTimersByTime(5)
      to(0) // the next one arrived
      vi.advanceTimersByTime(95)
    }
    expect(seen).toEqual([0])
    to(1)
    vi.advanceTimersByTime(1000)
    expect(seen).toEqual([0, 1])
  })

  it('rises to the lowest count that held, then to a later higher one after its own wait', () => {
    const { s, seen, to } = setup(0)
    to(3)
    vi.advanceTimersByTime(400)
    to(2) // still above the advertised 0: the pending rise keeps its start, at 2
    vi.advanceTimersByTime(600)
    expect(s.value).toBe(2)
    to(4) // one more rise while at 2
    vi.advanceTimersByTime(999)
    expect(s.value).toBe(2)
    vi.advanceTimersByTime(1)
    expect(s.value).toBe(4)
    expect(seen).toEqual([2, 4])
  })

  it('fires nothing after stop', () => {
    const { s, seen, to } = setup(0)
    to(1)
    s.stop()
    vi.advanceTimersByTime(5000)
    expect(seen).toEqual([])
    expect(s.value).toBe(0)
  })
})
