/**
 * Live series for the Contribute charts: served counts in a ring of time buckets, read back as
 * per-minute rates over a sliding window, plus one gauge (credit). Pure: the clock is injected.
 *
 *   const s = createSeries()
 *   s.follow('self', controls.totals()) // on every 'totals' event
 *   const d = s.data() // uPlot: [d.t, d.jobs]
 */

/** What the sampler counts: the served totals' counters. */
export interface Counts {
  jobs: number
  computeMs: number
  bytesIn: number
  bytesOut: number
}

const KEYS = ['jobs', 'computeMs', 'bytesIn', 'bytesOut'] as const satisfies readonly (keyof Counts)[]

export interface SeriesOptions {
  /** The span the charts show: 15 minutes. */
  windowMs?: number
  /** One point per bucket: 10 s, so a chart moves several times a minute. */
  bucketMs?: number
  /** Each point's value is the count over this span ending there: a minute, for "per minute". */
  rateMs?: number
  now?: () => number
}

/** Columns for uPlot, oldest first; null where the sampler was not yet running. */
export interface SeriesData {
  /** Point times in seconds (uPlot's x): bucket boundaries, and now last. */
  t: number[]
  /** Jobs in the minute (rateMs) ending at each point. */
  jobs: (number | null)[]
  /** Compute-seconds in the minute ending at each point. */
  computeS: (number | null)[]
  bytesIn: (number | null)[]
  bytesOut: (number | null)[]
  /** The gauge's value at each point. */
  gauge: (number | null)[]
}

export interface Series {
  /** Adds counts at `at` (default now), or spread evenly over (since, at]. */
  add(c: Partial<Counts>, at?: number, since?: number): void
  /**
   * Follows cumulative totals: adds what grew since the last call for the same source. A new source
   * (another compute tab) or a total that went down only sets the baseline. `since` spreads the growth
   * (e.g. over the time the page was hidden).
   */
  follow(source: string, totals: Counts, since?: number): void
  /** Records the gauge's value (credit) now. */
  gauge(value: number): void
  data(): SeriesData
}

/** The ring of buckets: slot i holds bucket stamps[i], with KEYS.length counts from i * KEYS.length. */
interface Ring {
  /** Bucket length, in ms. */
  B: number
  n: number
  rateMs: number
  stamps: Float64Array
  vals: Float64Array
}

const slot = (r: Ring, b: number) => ((b % r.n) + r.n) % r.n

/** The slot of bucket `b`, cleared when it last held an older bucket. */
function claim(r: Ring, b: number): number {
  const i = slot(r, b)
  if (r.stamps[i] !== b) {
    r.stamps[i] = b
    r.vals.fill(0, i * KEYS.length, (i + 1) * KEYS.length)
  }
  return i
}

function addTo(r: Ring, b: number, c: Partial<Counts>, share: number): void {
  const i = claim(r, b)
  for (const [k, key] of KEYS.entries()) r.vals[i * KEYS.length + k]! += (c[key] ?? 0) * share
}

/** Adds `c` at `at`, or spread over (since, at]; `t` is now. */
function addAt(r: Ring, c: Partial<Counts>, at: number, t: number, since?: number): void {
  const { B } = r
  const end = Math.min(at, t)
  const oldest = Math.floor(t / B) - r.n + 1
  const from = since == null ? end : Math.max(since, oldest * B)
  if (!(from < end)) {
    if (Math.floor(end / B) >= oldest) addTo(r, Math.floor(end / B), c, 1)
    return
  }
  // Spread evenly: each bucket takes its share of (from, end].
  for (let b = Math.floor(from / B); b * B < end; b++) {
    const share = (Math.min((b + 1) * B, end) - Math.max(b * B, from)) / (end - from)
    if (share > 0) addTo(r, b, c, share)
  }
}

/** The count of `k` over (T - rateMs, T]; a bucket straddling the edge counts by its overlap. */
function rate(r: Ring, T: number, k: number, t: number): number {
  const { B, rateMs } = r
  let sum = 0
  for (let b = Math.floor((T - rateMs) / B); b * B < T; b++) {
    const i = slot(r, b)
    if (r.stamps[i] !== b) continue
    const start = b * B
    const end = Math.min(start + B, t) // the current bucket holds counts up to now only
    const overlap = Math.min(end, T) - Math.max(start, T - rateMs)
    if (overlap > 0 && end > start) sum += (r.vals[i * KEYS.length + k]! * overlap) / (end - start)
  }
  return sum
}

/** The gauge at each of the (ascending) points: one pass over both. */
function gaugeAt(gauges: [at: number, value: number][], points: number[]): (number | null)[] {
  let g = 0
  let v: number | null = null
  return points.map((T) => {
    for (; g < gauges.length && gauges[g]![0] <= T; g++) v = gauges[g]![1]
    return v
  })
}

/** The points of the window ending at `t`: bucket boundaries, and `t` last when it is past one. */
function windowPoints(t: number, windowMs: number, B: number): number[] {
  const points: number[] = []
  const first = Math.floor(t / B) * B
  for (let j = Math.round(windowMs / B) - 1; j >= 0; j--) points.push(first - j * B)
  if (t > first) points.push(t)
  return points
}

export function createSeries(o: SeriesOptions = {}): Series {
  const windowMs = o.windowMs ?? 15 * 60_000
  const B = o.bucketMs ?? 10_000
  const rateMs = o.rateMs ?? 60_000
  const now = o.now ?? Date.now
  const startedAt = now()
  // Enough buckets for the window plus one rate span before its first point.
  const n = Math.ceil((windowMs + rateMs) / B) + 1
  const ring: Ring = {
    B,
    n,
    rateMs,
    stamps: new Float64Array(n).fill(-1), // which bucket each slot holds now
    vals: new Float64Array(n * KEYS.length),
  }
  const gauges: [at: number, value: number][] = []
  let followed: { source: string; totals: Counts } | undefined

  function add(c: Partial<Counts>, at = now(), since?: number): void {
    addAt(ring, c, at, now(), since)
  }

  return {
    add,
    follow(source, totals, since) {
      const prev = followed
      followed = { source, totals: { ...totals } }
      if (!prev || prev.source !== source) return
      const grew = KEYS.map((k) => totals[k] - prev.totals[k])
      if (grew.some((d) => d < 0)) return
      if (grew.every((d) => d === 0)) return
      add(Object.fromEntries(KEYS.map((k, i) => [k, grew[i]])), now(), since)
    },
    gauge(value) {
      const t = now()
      if (gauges.at(-1)?.[1] === value) return
      gauges.push([t, value])
      // Keep the last value before the window: it is the value at the window's first points.
      while (gauges.length > 1 && gauges[1]![0] <= t - windowMs) gauges.shift()
    },
    data() {
      const t = now()
      const points = windowPoints(t, windowMs, B)
      const col = (k: number, scale = 1) =>
        points.map((T) => (T < startedAt ? null : rate(ring, T, k, t) * scale))
      return {
        t: points.map((T) => T / 1000),
        jobs: col(0),
        computeS: col(1, 1 / 1000),
        bytesIn: col(2),
        bytesOut: col(3),
        gauge: gaugeAt(gauges, points),
      }
    },
  }
}
