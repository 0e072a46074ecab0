/**
 * Choosing 1 or N WASM threads from timed pairs: the same input run back to back on both settings.
 * Pure, so the rule can be tested on synthetic and recorded traces; `engine.ts` does the timing.
 *
 * @example
 * const v = judgeThreads([{ one: 10, many: 6 }, { one: 11, many: 6.5 }, ...], 2)
 * if (v.settled) use(v.threads)
 */

/** One back-to-back pair (in either order): ms on 1 thread and ms on N threads. */
export interface TimedPair {
  one: number
  many: number
}

export interface ThreadRules {
  /** N threads must win by this median time ratio: fewer threads leave cores to other jobs and tabs. */
  margin: number
  /** Pairs at the start left out: a fresh worker's first runs are slow while its WASM code tiers up. */
  skip: number
  /** Judged pairs (after `skip`) needed before a verdict can be settled. */
  minPairs: number
  /**
   * A verdict settles when a fair coin would put at least as many pairs on its side at most this
   * often (a one-sided sign test): 4 of 4, 7 of 8, 17 of 24, 59 of 100 pairs.
   */
  alpha: number
}

/**
 * `alpha` 1/16 lets 4 unanimous pairs settle a clear case, as before (4 of 5 and 5 of 6 no longer
 * do); unlike a fixed share of pairs (80 % used to be asked) it also settles a consistent but bimodal
 * lead given enough pairs, e.g. two threads that win 6 runs in 10 on a 1.5 ms model. The verdict is
 * judged after every pair, so the chance of settling on N is above alpha. Simulated over up to 200
 * pairs, by the share of pairs N wins by the margin: 0.4 → 5 % (the 80 % rule: 9 %), 0.5 → 29 %
 * (20 %; N is then about the margin faster on median), 0.6 → 92 % (37 %).
 */
export const THREAD_RULES: ThreadRules = { margin: 0.97, skip: 1, minPairs: 4, alpha: 1 / 16 }

/** P(X ≥ k) for X ~ Binomial(n, 1/2): binomial coefficients summed with rescaling, so no underflow. */
export function coinTail(n: number, k: number): number {
  let c = 1 // C(n, i), scaled alike with `tail` and `total`
  let tail = k <= 0 ? 1 : 0
  let total = 1
  for (let i = 1; i <= n; i++) {
    c = (c * (n - i + 1)) / i
    total += c
    if (i >= k) tail += c
    if (total > 1e250) [c, tail, total] = [c / 1e250, tail / 1e250, total / 1e250]
  }
  return tail / total
}

export interface ThreadVerdict {
  /** `lean` once settled; until then the fallback (1, or a re-check's current choice). */
  threads: number
  /** 1, or `n` when the median ratio is below the margin. */
  lean: number
  /** Median of the per-pair N/1 time ratios: each ratio is taken within one pair, so load drift cancels. */
  ratio: number
  /** Whether enough pairs agree that more would not change the answer: calibration may stop. */
  settled: boolean
  /** Pairs judged (after `skip`). */
  pairs: number
  /** Median ms per thread count over the judged pairs, e.g. { 1: 170, 2: 95 }. */
  medianMs: Record<number, number>
}

export function median(xs: readonly number[]): number {
  if (!xs.length) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

/**
 * The median N/1 ratio leans one way; it is robust to a few pairs hit by a load burst on one side.
 * The lean is settled once `minPairs` are judged and a sign test puts enough of them on its side: for
 * N, pairs where N was faster by the margin; for 1, pairs where N was not. Until then the verdict is
 * `fallback`: near-ties and noise that never settle go to fewer threads, or keep a re-check's choice.
 */
export function judgeThreads(
  all: readonly TimedPair[],
  n: number,
  rules = THREAD_RULES,
  fallback = 1,
): ThreadVerdict {
  const pairs = all.slice(Math.min(rules.skip, Math.max(0, all.length - 1)))
  const ratios = pairs.map((p) => p.many / Math.max(p.one, 1e-3))
  const ratio = median(ratios)
  const lean = n > 1 && ratio < rules.margin ? n : 1
  const onSide = ratios.filter((r) => (lean === 1 ? r >= rules.margin : r < rules.margin)).length
  const settled = pairs.length >= rules.minPairs && coinTail(pairs.length, onSide) <= rules.alpha
  return {
    threads: settled ? lean : fallback,
    lean,
    ratio,
    settled,
    pairs: pairs.length,
    medianMs: { 1: median(pairs.map((p) => p.one)), [n]: median(pairs.map((p) => p.many)) },
  }
}
