import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { settleUsed } from '../../src/compute/settled-used.ts'

describe('settled busy count', () => {
  beforeEach(() => vi.useFakeTimers())
  afterEach(() => vi.useRealTimers())

  const TAU = 500
  const setup = (start: number) => {
    let used = start
    const s = settleUsed({ read: () => used, tauMs: TAU, now: () => Date.now() })
    const seen: number[] = []
    s.events.addEventListener('change', () => seen.push(s.value))
    const to = (n: number) => {
      used = n
      s.update()
    }
    return { s, seen, to }
  }
  /** When the average of a step from `from` to `to` crosses the band edge 0.75 away from `from`. */
  const crossMs = (from: number, to: number) =>
    TAU * Math.log(Math.abs(to - from) / (Math.abs(to - from) - 0.75))

  it('follows a lasting change once the average crosses the band, and not before', () => {
    const { s, seen, to } = setup(0)
    to(1)
    vi.advanceTimersByTime(crossMs(0, 1) - 20)
    expect(s.value).toBe(0)
    vi.advanceTimersByTime(40)
    expect(s.value).toBe(1)
    vi.advanceTimersByTime(5000) // the average reaches 1
    to(0)
    vi.advanceTimersByTime(crossMs(1, 0) - 20)
    expect(s.value).toBe(1)
    vi.advanceTimersByTime(40)
    expect(seen).toEqual([1, 0])
  })

  it('stays busy while a stream of jobs keeps the slot nearly always used', () => {
    const { s, seen, to } = setup(0)
    to(1)
    vi.advanceTimersByTime(2000)
    for (let i = 0; i < 100; i++) {
      to(0) // a job ended
      vi.advanceTimersByTime(5)
      to(1) // the next one arrived
      vi.advanceTimersByTime(95)
    }
    expect(seen).toEqual([1])
    expect(s.value).toBe(1)
  })

  it('stays free under a trickle of short jobs', () => {
    const { seen, to } = setup(0)
    for (let i = 0; i < 50; i++) {
      to(1)
      vi.advanceTimersByTime(50)
      to(0)
      vi.advanceTimersByTime(750)
    }
    expect(seen).toEqual([])
  })

  it('moves by several slots at once, and waits again when the count rises further meanwhile', () => {
    const { s, seen, to } = setup(0)
    to(3)
    vi.advanceTimersByTime(crossMs(0, 3) + 10)
    expect(s.value).toBe(1)
    vi.advanceTimersByTime(5000)
    expect(s.value).toBe(3)
    to(4)
    vi.advanceTimersByTime(crossMs(3, 4) + 10)
    expect(s.value).toBe(4)
    expect(seen).toEqual([1, 2, 3, 4])
  })

  it('fires nothing after stop, not even on a later update', () => {
    const { s, seen, to } = setup(0)
    to(1)
    s.stop()
    vi.advanceTimersByTime(5000)
    to(2)
    vi.advanceTimersByTime(5000)
    expect(seen).toEqual([])
    expect(s.value).toBe(0)
  })
})
