/** Small statistics for bench figures: every figure is a distribution or a ratio measured side by side. */

export interface Dist {
  n: number
  p50: number
  p95: number
  min: number
  max: number
}

export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  const pos = (s.length - 1) * q
  const lo = Math.floor(pos)
  return s[lo]! + (s[Math.min(lo + 1, s.length - 1)]! - s[lo]!) * (pos - lo)
}

export const dist = (xs: readonly number[]): Dist => ({
  n: xs.length,
  p50: quantile(xs, 0.5),
  p95: quantile(xs, 0.95),
  min: Math.min(...xs),
  max: Math.max(...xs),
})

export const median = (xs: readonly number[]) => quantile(xs, 0.5)
export const round = (x: number, d = 2) => (Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : x)
export const MiB = 1024 * 1024
