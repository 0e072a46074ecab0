/** The Contribute charts' sampler: buckets, per-minute rates, following totals, the credit gauge. */
import { describe, expect, it } from 'vitest'
import { type Counts, createSeries } from '../../src/ui/series.ts'

const MIN = 60_000
const T0 = 1_700_000_005_000 // 5 s into a 10 s bucket

function clocked() {
  let t = T0
  const s = createSeries({ now: () => t }) // 15 min window, 10 s buckets, per minute
  const tick = (ms: number) => {
    t += ms
  }
  return { s, tick, now: () => t }
}
const last = <T>(a: T[]) => a.at(-1)
const totals = (jobs: number, computeMs = 0, bytesIn = 0, bytesOut = 0): Counts => ({
  jobs,
  computeMs,
  bytesIn,
  bytesOut,
})

describe('createSeries', () => {
  it('gives 90 bucket boundaries and now, in seconds, ascending, over 15 minutes', () => {
    const { s, tick, now } = clocked()
    tick(15 * MIN)
    const d = s.data()
    expect(d.t).toHaveLength(91)
    expect(last(d.t)).toBe(now() / 1000)
    expect(d.t.every((x, i) => i === 0 || x > d.t[i - 1]!)).toBe(true)
    expect(d.t.at(-2)! % 10).toBe(0)
    expect(last(d.t)! - d.t[0]!).toBeCloseTo(895, 5) // 89 buckets back from the last boundary, plus 5 s
    for (const col of [d.jobs, d.computeS, d.bytesIn, d.bytesOut]) expect(col).toHaveLength(91)
  })

  it('leaves points before it started empty (null), not zero', () => {
    const { s, tick } = clocked()
    tick(30_000)
    const d = s.data()
    expect(d.jobs[0]).toBeNull()
    expect(last(d.jobs)).toBe(0)
    expect(d.jobs.filter((v) => v != null)).toHaveLength(4) // boundaries at +5, +15, +25 s and now
  })

  it('reads counts as a rolling minute: a job counts for 60 s, then leaves the rate but not the chart', () => {
    const { s, tick } = clocked()
    s.add({ jobs: 1, computeMs: 1500, bytesIn: 100, bytesOut: 40 })
    tick(30_000)
    let d = s.data()
    expect(last(d.jobs)).toBeCloseTo(1)
    expect(last(d.computeS)).toBeCloseTo(1.5)
    expect([last(d.bytesIn), last(d.bytesOut)]).toEqual([100, 40])
    tick(5 * MIN)
    d = s.data()
    expect(last(d.jobs)).toBe(0)
    // The boundaries within a minute after the job still show it.
    expect(d.jobs.filter((v) => v != null && v > 0.99).length).toBeGreaterThanOrEqual(5)
  })

  it('counts a minute exactly at now: the bucket straddling its start counts by its overlap', () => {
    const { s, tick } = clocked() // T0 is 5 s into its bucket: call that bucket's start 0
    tick(20_000)
    s.add({ jobs: 6 }) // at 25 s, in the bucket [20 s, 30 s)
    tick(54_000) // 79 s: the minute (19 s, 79 s] holds the whole bucket
    expect(last(s.data().jobs)).toBeCloseTo(6)
    tick(6_000) // 85 s: (25 s, 85 s] holds half of it
    expect(last(s.data().jobs)).toBeCloseTo(3)
    tick(10_000) // 95 s: none of it
    expect(last(s.data().jobs)).toBe(0)
  })

  it('spreads counts given a since over the buckets they cover', () => {
    const { s, tick, now } = clocked()
    tick(5 * MIN)
    s.add({ jobs: 30 }, now(), now() - 3 * MIN) // 10 a minute for 3 minutes
    const d = s.data()
    expect(last(d.jobs)).toBeCloseTo(10)
    const sumOver = (col: (number | null)[]) => col.reduce<number>((a, v) => a + (v ?? 0), 0)
    // Each 10 s boundary shows the minute before it: 3 minutes of 10/min.
    expect(sumOver(d.jobs)).toBeGreaterThan(150)
  })

  it('drops what fell out of the ring: a reused slot does not show old counts', () => {
    const { s, tick } = clocked()
    s.add({ jobs: 5 })
    tick(17 * MIN) // past window + rate: the slot is reused by a new bucket
    s.add({ jobs: 1 })
    const d = s.data()
    expect(Math.max(...d.jobs.map((v) => v ?? 0))).toBeCloseTo(1)
  })

  it('follows totals: growth counts, a new source or a drop only sets the baseline', () => {
    const { s, tick } = clocked()
    s.follow('self', totals(10, 5000, 1000, 500)) // baseline: nothing counted
    tick(1000)
    expect(last(s.data().jobs)).toBe(0)
    s.follow('self', totals(12, 8000, 1300, 600))
    let d = s.data()
    expect([last(d.jobs), last(d.computeS), last(d.bytesIn), last(d.bytesOut)]).toEqual([2, 3, 300, 100])
    s.follow('other-tab', totals(100, 0, 0, 0)) // another tab's totals: a new baseline
    s.follow('other-tab', totals(101, 1000, 10, 10))
    s.follow('other-tab', totals(50, 0, 0, 0)) // went down (a tab that restarted): baseline again
    d = s.data()
    expect(last(d.jobs)).toBe(3)
    expect(last(d.computeS)).toBe(4)
  })

  it('follows with a since: growth while hidden is spread over that time', () => {
    const { s, tick, now } = clocked()
    tick(5 * MIN)
    s.follow('self', totals(0))
    const hiddenAt = now()
    tick(4 * MIN)
    s.follow('self', totals(40), hiddenAt)
    expect(last(s.data().jobs)).toBeCloseTo(10)
  })

  it('keeps the gauge as a step: null before its first value, then carried forward past the window', () => {
    const { s, tick } = clocked()
    tick(60_000)
    s.gauge(3)
    tick(30_000)
    s.gauge(4)
    s.gauge(4) // unchanged: no new step
    tick(30_000)
    let d = s.data()
    expect(d.gauge[0]).toBeNull()
    expect(last(d.gauge)).toBe(4)
    expect(d.gauge.filter((v) => v === 3).length).toBe(3)
    tick(20 * MIN) // no change for longer than the window: the value still holds
    d = s.data()
    expect(d.gauge.every((v) => v === 4)).toBe(true)
  })
})
