/**
 * Live charts on the Contribute view: jobs, compute-seconds and bytes per minute, and credit, over the
 * last 15 minutes. main.ts loads this module with import() so that only the app, never the widget,
 * pulls in uPlot. Every chart has a text title and a text summary: the canvas is for the eye only.
 */
import uPlot from 'uplot'
import 'uplot/dist/uPlot.min.css'
import './charts.css'
import type { ServedTotals } from '../compute/settings.ts'
import type { Peer } from '../peer.ts'
import { formatBytes } from './render.ts'
import { createSeries, type Series, type SeriesData } from './series.ts'

/** What the charts read from the peer. */
export type ChartsPeer = Pick<Peer, 'controls' | 'credits'>

const BUCKET_MS = 10_000
const WINDOW_MIN = 15
const HEIGHT = 150

interface Theme {
  fg: string
  muted: string
  line: string
  accent: string
  ok: string
  font: string
}

interface Line {
  label: string
  pick(d: SeriesData): (number | null)[]
  color: 'accent' | 'ok'
  dash?: number[]
}

interface Spec {
  title: string
  lines: Line[]
  tick(v: number): string
  /** Tick steps for the y axis; uPlot's decimal ones otherwise. */
  incrs?: number[]
  /** Width of the y axis' labels, in px. */
  axisSize?: number
  /** The y axis shows at least 0…minTop, so an idle chart is a flat line at the bottom. */
  minTop: number
  summary(d: SeriesData, t: ServedTotals): string
}

const last = (col: (number | null)[]) => col.at(-1) ?? 0
const peak = (col: (number | null)[]) => Math.max(0, ...col.map((v) => v ?? 0))
/** Up to one decimal, none when whole: a count spread over hidden time may be fractional. */
const num = (v: number) => String(Math.round(v * 10) / 10)
const secs = (v: number) => `${v.toFixed(1)} s`
/** Axis labels: whole units, so they stay narrow. */
const shortBytes = (n: number) =>
  n < 1024
    ? `${Math.round(n)} B`
    : n < 2 ** 20
      ? `${Math.round(n / 1024)} KiB`
      : `${Math.round(n / 2 ** 20)} MiB`
/** The x axis' times, one line, in the reader's locale. */
const clock = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' })

const STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500]
/** Counts: whole ticks only. */
const WHOLE = [...STEPS, ...STEPS.map((s) => s * 1000), ...STEPS.map((s) => s * 1e6)]
/** Bytes: ticks at round KiB and MiB. */
const BINARY = [...STEPS, ...STEPS.map((s) => s * 1024), ...STEPS.map((s) => s * 2 ** 20), 2 ** 30]

const SPECS: Spec[] = [
  {
    title: 'Jobs served per minute',
    lines: [{ label: 'jobs', pick: (d) => d.jobs, color: 'accent' }],
    tick: num,
    incrs: WHOLE,
    minTop: 4,
    // Whole jobs: the minute's oldest bucket counts in part, which a reader need not see.
    summary: (d, t) =>
      `${Math.round(last(d.jobs))} in the last minute · peak ${Math.round(peak(d.jobs))} · ${t.jobs} in total`,
  },
  {
    title: 'Compute-seconds per minute',
    lines: [{ label: 'compute-seconds', pick: (d) => d.computeS, color: 'accent' }],
    tick: (v) => `${num(v)} s`,
    minTop: 4,
    summary: (d, t) =>
      `${secs(last(d.computeS))} in the last minute · peak ${secs(peak(d.computeS))} · ${secs(t.computeMs / 1000)} in total`,
  },
  {
    title: 'Bytes in and out per minute',
    lines: [
      { label: 'in', pick: (d) => d.bytesIn, color: 'accent' },
      { label: 'out', pick: (d) => d.bytesOut, color: 'ok', dash: [6, 4] },
    ],
    tick: shortBytes,
    incrs: BINARY,
    axisSize: 64,
    minTop: 1024,
    summary: (d, t) =>
      `In ${formatBytes(last(d.bytesIn))}, out ${formatBytes(last(d.bytesOut))} in the last minute ` +
      `(solid line: in, dashed: out) · ${formatBytes(t.bytesIn)} in, ${formatBytes(t.bytesOut)} out in total`,
  },
  {
    title: 'Credit',
    lines: [{ label: 'credit', pick: (d) => d.gauge, color: 'ok' }],
    tick: num,
    incrs: WHOLE,
    minTop: 0,
    summary: (d) => {
      const first = d.gauge.find((v) => v != null) ?? 0
      const since = d.gauge[0] == null ? 'since this page opened' : `in the last ${WINDOW_MIN} minutes`
      return `${last(d.gauge)} in total · ${last(d.gauge) - first} earned ${since}`
    },
  },
]

/** The theme's colours, from style.css's custom properties (they change with prefers-color-scheme). */
function readTheme(el: HTMLElement): Theme {
  const css = getComputedStyle(el)
  const v = (name: string, fallback: string) => css.getPropertyValue(name).trim() || fallback
  return {
    fg: v('--fg', '#1b1d21'),
    muted: v('--muted', '#545a63'),
    line: v('--line', '#c9ced6'),
    accent: v('--accent', '#1d5fc2'),
    ok: v('--ok', '#17692f'),
    font: `12px ${css.fontFamily || 'system-ui, sans-serif'}`,
  }
}

/** A translucent fill under a line, for #rrggbb colours. */
const tint = (hex: string) => (/^#[0-9a-f]{6}$/i.test(hex) ? `${hex}22` : undefined)

function plotOptions(spec: Spec, theme: Theme, width: number): uPlot.Options {
  const axis = (): uPlot.Axis => ({
    stroke: theme.muted,
    font: theme.font,
    grid: { stroke: theme.line, width: 1 },
    ticks: { stroke: theme.line, width: 1, size: 4 },
  })
  return {
    width,
    height: HEIGHT,
    legend: { show: false },
    cursor: { show: false },
    scales: {
      x: { time: true },
      y: {
        range: (_u, min, max) =>
          spec.minTop > 0
            ? [0, Math.max(spec.minTop, (max ?? 0) * 1.1)]
            : [Math.max(0, (min ?? 0) - 1), (max ?? 0) + 1],
      },
    },
    axes: [
      { ...axis(), size: 32, space: 80, values: (_u, splits) => splits.map((s) => clock.format(s * 1000)) },
      {
        ...axis(),
        size: spec.axisSize ?? 48,
        values: (_u, splits) => splits.map(spec.tick),
        ...(spec.incrs ? { incrs: spec.incrs } : {}),
      },
    ],
    series: [
      {},
      ...spec.lines.map(
        (l): uPlot.Series => ({
          label: l.label,
          stroke: theme[l.color],
          width: 2,
          points: { show: false },
          ...(l.dash ? { dash: l.dash } : {}),
          ...(l.dash ? {} : { fill: tint(theme[l.color]) }),
        }),
      ),
    ],
  }
}

interface Chart {
  spec: Spec
  plotEl: HTMLElement
  summary: HTMLElement
  plot?: uPlot
}

/** The mounted charts and what they draw from. */
interface View {
  el: HTMLElement
  c: ChartsPeer['controls']
  series: Series
  hint: HTMLElement
  charts: Chart[]
  theme: Theme
  /** Something changed since the last draw. */
  dirty: boolean
  drawnAt: number
}

/** The section: a heading, the other-tab hint and a figure per spec, its summary in words. */
function buildCharts(): { root: HTMLElement; hint: HTMLElement; charts: Chart[] } {
  const root = document.createElement('section')
  root.className = 'pc-charts'
  root.setAttribute('aria-labelledby', 'pc-charts-title')
  const heading = Object.assign(document.createElement('h3'), {
    id: 'pc-charts-title',
    textContent: `The last ${WINDOW_MIN} minutes`,
  })
  const hint = Object.assign(document.createElement('p'), {
    className: 'pc-charts-hint',
    hidden: true,
    textContent: 'Another tab of this browser computes; these charts follow it.',
  })
  const grid = Object.assign(document.createElement('div'), { className: 'pc-charts-grid' })
  root.append(heading, hint, grid)
  const charts: Chart[] = SPECS.map((spec) => {
    const figure = Object.assign(document.createElement('figure'), { className: 'pc-chart' })
    const caption = document.createElement('figcaption')
    const title = Object.assign(document.createElement('span'), {
      className: 'pc-chart-title',
      textContent: spec.title,
    })
    const summary = Object.assign(document.createElement('span'), { className: 'pc-chart-summary' })
    caption.append(title, summary)
    const plotEl = Object.assign(document.createElement('div'), { className: 'pc-chart-plot' })
    plotEl.setAttribute('aria-hidden', 'true') // the summary says it in words
    figure.append(caption, plotEl)
    grid.append(figure)
    return { spec, plotEl, summary }
  })
  return { root, hint, charts }
}

/** The served totals: this tab's, or the compute tab's when another tab of the browser computes. */
function source(c: ChartsPeer['controls']): { key: string; totals: ServedTotals } {
  const other = c.computeTab()
  return { key: other?.peer ?? 'self', totals: other ? other.totals : c.totals() }
}

const plotData = (chart: Chart, d: SeriesData): uPlot.AlignedData => [
  d.t,
  ...chart.spec.lines.map((l) => l.pick(d)),
]

function build(v: View, chart: Chart, d: SeriesData): void {
  chart.plot?.destroy()
  const width = Math.max(120, Math.floor(chart.plotEl.clientWidth) || 300)
  chart.plot = new uPlot(plotOptions(chart.spec, v.theme, width), plotData(chart, d), chart.plotEl)
}

/** Redraws when something changed or a bucket went by; never while hidden or off screen. */
function draw(v: View, force = false): void {
  if (document.hidden || v.el.getClientRects().length === 0) return
  const now = Date.now()
  if (!force && !v.dirty && now - v.drawnAt < BUCKET_MS) return
  v.dirty = false
  v.drawnAt = now
  const d = v.series.data()
  const { totals } = source(v.c)
  v.hint.hidden = v.c.computeTab() == null
  for (const chart of v.charts) {
    if (chart.plot) chart.plot.setData(plotData(chart, d))
    else build(v, chart, d)
    chart.summary.textContent = chart.spec.summary(d, totals)
  }
}

/** Follows each plot's width; redraws once shown again (the view's tab) or resized. */
function observeSize(v: View): ResizeObserver {
  const resize = new ResizeObserver((entries) => {
    for (const e of entries) {
      const chart = v.charts.find((x) => x.plotEl === e.target)
      const width = Math.floor(e.contentRect.width)
      if (chart?.plot && width > 0 && width !== chart.plot.width)
        chart.plot.setSize({ width, height: HEIGHT })
    }
    draw(v, true)
  })
  for (const chart of v.charts) resize.observe(chart.plotEl)
  return resize
}

/**
 * Each second while visible: another compute tab's totals arrive by polling, and the x axis moves.
 * `sample(since)` takes in what was served while hidden. Returns the stop.
 */
function tickWhileVisible(v: View, sample: (since?: number) => void): () => void {
  let timer: ReturnType<typeof setInterval> | undefined
  let hiddenAt: number | undefined
  const tick = () => {
    if (v.c.computeTab()) sample()
    draw(v)
  }
  const onVisibility = () => {
    if (document.hidden) {
      clearInterval(timer)
      timer = undefined
      hiddenAt = Date.now()
      return
    }
    sample(hiddenAt) // what the compute tab served meanwhile, spread over the hidden time
    hiddenAt = undefined
    draw(v, true)
    timer ??= setInterval(tick, 1000)
  }
  document.addEventListener('visibilitychange', onVisibility)
  onVisibility()
  return () => {
    clearInterval(timer)
    document.removeEventListener('visibilitychange', onVisibility)
  }
}

export function mountContributeCharts(peer: ChartsPeer, el: HTMLElement): { stop(): void } {
  const c = peer.controls
  const series = createSeries({ bucketMs: BUCKET_MS, windowMs: WINDOW_MIN * 60_000 })
  const { root, hint, charts } = buildCharts()
  el.replaceChildren(root)

  const sample = (since?: number) => {
    const s = source(c)
    series.follow(s.key, s.totals, since)
    v.dirty = true
  }
  const onCredit = () => {
    series.gauge(peer.credits.total)
    v.dirty = true
  }
  const v: View = { el, c, series, hint, charts, theme: readTheme(el), dirty: true, drawnAt: 0 }
  sample()
  onCredit()

  const resize = observeSize(v)
  const dark = matchMedia('(prefers-color-scheme: dark)')
  const onScheme = () => {
    v.theme = readTheme(el)
    const d = series.data()
    for (const chart of charts) if (chart.plot) build(v, chart, d)
  }
  dark.addEventListener('change', onScheme)
  const stopTicking = tickWhileVisible(v, sample)

  // Cheap even while hidden: each only moves numbers into the series.
  const onTotals = () => sample()
  c.events.addEventListener('totals', onTotals)
  peer.credits.events.addEventListener('change', onCredit)

  return {
    stop() {
      stopTicking()
      dark.removeEventListener('change', onScheme)
      c.events.removeEventListener('totals', onTotals)
      peer.credits.events.removeEventListener('change', onCredit)
      resize.disconnect()
      for (const chart of charts) chart.plot?.destroy()
      root.remove()
    },
  }
}
