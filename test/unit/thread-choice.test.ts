/**
 * The thread-count rule (src/compute/thread-choice.ts) on synthetic traces: per-pair ratios cancel
 * load drift, a few load bursts do not flip the verdict, near-ties and unsettled leans go to the
 * fallback (1, or a re-check's current choice).
 */
import { describe, expect, it } from 'vitest'
import { coinTail, judgeThreads, THREAD_RULES, type TimedPair } from '../../src/compute/thread-choice.ts'

/** `count` pairs from a 1-thread time and an N/1 ratio, with the load factor `load(i)` on both. */
const trace = (count: number, one: number, ratio: number, load = (_i: number) => 1): TimedPair[] =>
  Array.from({ length: count }, (_, i) => ({ one: one * load(i), many: one * ratio * load(i) }))

describe('judgeThreads', () => {
  it('picks N when it wins clearly, and settles after minPairs judged pairs', () => {
    const v = judgeThreads(trace(1 + THREAD_RULES.minPairs, 270, 0.55), 2)
    expect(v).toMatchObject({ threads: 2, settled: true, pairs: THREAD_RULES.minPairs })
    expect(v.ratio).toBeCloseTo(0.55)
    expect(v.medianMs).toEqual({ 1: 270, 2: 270 * 0.55 })
    expect(judgeThreads(trace(THREAD_RULES.minPairs, 270, 0.55), 2).settled).toBe(false)
  })

  it('leaves out the first pair: a fresh worker is slow on it', () => {
    const pairs = [{ one: 100, many: 400 }, ...trace(4, 100, 0.6)]
    expect(judgeThreads(pairs, 2)).toMatchObject({ threads: 2, pairs: 4 })
  })

  it('load drift between pairs cancels: each ratio is taken within its pair', () => {
    // Load climbs 8x over the run; N stays 0.6 of 1 within every pair.
    const v = judgeThreads(
      trace(9, 100, 0.6, (i) => 1 + i),
      2,
    )
    expect(v).toMatchObject({ threads: 2, settled: true })
    expect(v.ratio).toBeCloseTo(0.6)
  })

  it('a few pairs hit by a burst on one side do not flip the verdict', () => {
    const pairs = trace(11, 100, 0.6)
    pairs[3] = { one: 100, many: 300 } // a burst during one N run
    pairs[6] = { one: 100, many: 250 }
    expect(judgeThreads(pairs, 2)).toMatchObject({ threads: 2, settled: true })
    const one = trace(9, 100, 1.3)
    one[2] = { one: 300, many: 130 } // a burst during one 1-thread run
    expect(judgeThreads(one, 2)).toMatchObject({ threads: 1, settled: true })
  })

  it('near-ties go to 1 and do not settle, so the caller keeps measuring', () => {
    // N is 2% faster on median, alternating around the margin.
    const pairs = Array.from({ length: 13 }, (_, i) => ({ one: 100, many: i % 2 ? 96 : 99 }))
    const v = judgeThreads(pairs, 2)
    expect(v.threads).toBe(1)
    expect(v.settled).toBe(false)
  })

  it('an unsettled lean gives the fallback: 1, or the current choice on a re-check', () => {
    // N wins 3 of 5 judged pairs: the median leans to N, but a coin flip could do that.
    const pairs = [
      { one: 100, many: 100 },
      ...[0.6, 1.2, 0.6, 1.1, 0.7].map((r) => ({ one: 100, many: 100 * r })),
    ]
    expect(judgeThreads(pairs, 2)).toMatchObject({ lean: 2, settled: false, threads: 1 })
    expect(judgeThreads(pairs, 2, THREAD_RULES, 2).threads).toBe(2)
  })

  it('settles a bimodal lead once enough pairs make it more than a coin flip', () => {
    // N wins 6 pairs in 10 by 40 % and loses the rest slightly, as 2 threads did on a 1.5 ms model.
    const bimodal = (n: number) =>
      Array.from({ length: n }, (_, i) => ({ one: 1.5, many: i % 5 < 3 ? 0.9 : 1.6 }))
    expect(judgeThreads(bimodal(11), 2)).toMatchObject({ lean: 2, settled: false, threads: 1 })
    expect(judgeThreads(bimodal(101), 2)).toMatchObject({ lean: 2, settled: true, threads: 2 })
  })

  it('coinTail is the upper tail of a fair coin', () => {
    expect(coinTail(4, 4)).toBe(1 / 16)
    expect(coinTail(8, 7)).toBe(9 / 256)
    expect(coinTail(10, 0)).toBeCloseTo(1)
    expect(coinTail(100, 59)).toBeLessThan(THREAD_RULES.alpha)
    expect(coinTail(100, 58)).toBeGreaterThan(THREAD_RULES.alpha)
    expect(coinTail(2000, 1000)).toBeCloseTo(0.509, 3) // no underflow where 0.5 ** n would be 0
    expect(coinTail(2000, 1100)).toBeLessThan(1e-5)
  })

  it('N never wins when N is 1', () => {
    expect(judgeThreads(trace(6, 100, 0.5), 1).threads).toBe(1)
  })
})
