/** The scale section's results (bench/scale.ts) and their markdown: one column per swarm size. */

export interface AdvertRate {
  /** Gossipsub advert deliveries per peer per minute (mean over the contributors), and their KiB. */
  msgsPerMin: number
  kibPerMin: number
}

export interface WindowCpu {
  /** Cores busy on the whole machine, and in the peers' processes. */
  machineCores: number
  peersCores: number
  /** CPU ms per second of each relay. */
  relayMsPerS: number[]
}

export interface ScaleRow {
  n: number
  procs: number
  loadAtStart: number[]
  loadAtEnd?: number[]
  /** ms from the first peers process started until every peer had a relay address; until each knew all others. */
  readyMs?: number
  convergedMs?: number
  /** …and until the advert rate was back near steady (each peer re-advertises when one joins). */
  settledMs?: number
  /** Cores busy on the machine while the peers started. */
  startCores?: number
  /** The fresh requester: ms from its start to a relay, and to every contributor's advert (`seen` of n). */
  join?: { relayMs: number; allMs?: number; seen: number }
  /** With no jobs, after convergence. */
  idle?: WindowCpu & { adverts: AdvertRate }
  /** While the requester dispatches at `dispatch.rate`. */
  busy?: WindowCpu & { adverts: AdvertRate; requesterAdvertsPerMin: number }
  dispatch?: {
    rate: number
    jobs: number
    failures: number
    errors: Record<string, number>
    p50: number
    p95: number
    max: number
    firstError?: string
  }
  /**
   * The requester at the end of the jobs window: its relay state, contributors it still knows, adverts
   * it received since it started, the median age of the newest advert it holds from each (s), and
   * its gossipsub score of its relays (the lower; gossipsub ignores a peer below −80).
   */
  requester?: { relay: string; known: number; adverts: number; advertAgeS: number; relayScore?: number }
  /** Connections each contributor holds to the relays (2 expected). */
  relayConnsPerPeer?: number
  links?: {
    requesterWarm: number
    requesterBusy?: number
    contributorsMean?: number
    contributorsMax?: number
    /** Of a contributor's links, those it dialled. */
    contributorsDialledMean?: number
    /** Contributors that served a job in the window. */
    contributorsServing?: number
  }
  /** Each relay: established TCP connections, RSS at the end and before any peer. */
  relays?: { conns: number; rssMiB: number; baseRssMiB: number }[]
  peersRssMiB?: number
  freeMemMiB?: number
  /** Why this size stopped short, if it did. */
  limit?: string
  errors: string[]
}

const f = (x: number | undefined, d = 1) => (x == null || !Number.isFinite(x) ? '–' : x.toFixed(d))
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0)

/** Relay CPU per connected peer, in ms per minute (both relays together over all their connections). */
function relayCpuPerPeer(r: ScaleRow, w: WindowCpu | undefined): number | undefined {
  const conns = sum(r.relays?.map((x) => x.conns) ?? [])
  return w && conns ? (sum(w.relayMsPerS) * 60) / conns : undefined
}

export function scaleTargets(rows: ScaleRow[]): [string, string, string, boolean | undefined][] {
  const out: [string, string, string, boolean | undefined][] = []
  for (const r of rows) {
    const all = r.join?.allMs
    const seen = all != null ? `${f(all, 0)} ms` : r.join ? `${r.join.seen}/${r.n} in 30 s` : 'not run'
    out.push([
      `scale ${r.n} peers: a new requester has every advert`,
      seen,
      '≤ 5000 ms',
      all != null && all <= 5000,
    ])
    const d = r.dispatch
    out.push([
      `scale ${r.n} peers: dispatch p95, mlp-tiny at ${d?.rate ?? 50} jobs/s (r = 1)`,
      d ? `${f(d.p95)} ms (${d.failures} of ${d.jobs} failed)` : (r.limit ?? 'not run'),
      '≤ 50 ms',
      d ? d.p95 <= 50 && d.failures === 0 : undefined,
    ])
  }
  return out
}

const secs = (ms: number | undefined) => f((ms ?? Number.NaN) / 1000)
const each = (xs: number[] | undefined, d = 0) => xs?.map((x) => f(x, d)).join('+') ?? '–'
const pair = (a: string, b: string) => `${a} / ${b}`

/** Relay RSS grown since before any peer, per connection it holds (KiB). */
function relayRssPerConn(r: ScaleRow): string {
  const conns = sum(r.relays?.map((x) => x.conns) ?? [])
  const grown = sum(r.relays?.map((x) => x.rssMiB - x.baseRssMiB) ?? [])
  return conns ? f((grown * 1024) / conns, 0) : '–'
}

function failed(d: NonNullable<ScaleRow['dispatch']>): string {
  const why = Object.entries(d.errors).map(([k, v]) => `${k} ${v}`)
  return `${d.failures} of ${d.jobs}${why.length ? ` (${why.join(', ')})` : ''}`
}

/** [figure, its value for one size]: the table's rows. */
const FIGURES: [string, (r: ScaleRow) => string][] = [
  [
    'peer processes; peers ready / every advert everywhere / adverts near steady (s)',
    (r) => `${r.procs}; ${secs(r.readyMs)} / ${secs(r.convergedMs)} / ${secs(r.settledMs)}`,
  ],
  ['machine cores busy while the peers started (of 2)', (r) => f(r.startCores, 2)],
  [
    'new requester: relay / every contributor advert (ms)',
    (r) =>
      pair(f(r.join?.relayMs, 0), r.join?.allMs != null ? f(r.join.allMs, 0) : `${r.join?.seen ?? '–'} seen`),
  ],
  [
    'dispatch mlp-tiny p50 / p95 / max (ms)',
    (r) => (r.dispatch ? `${f(r.dispatch.p50)} / ${f(r.dispatch.p95)} / ${f(r.dispatch.max, 0)}` : '–'),
  ],
  ['failed jobs', (r) => (r.dispatch ? failed(r.dispatch) : '–')],
  ['relay CPU, each (ms/s), idle / jobs', (r) => pair(each(r.idle?.relayMsPerS), each(r.busy?.relayMsPerS))],
  [
    'relay CPU per connection (ms/min), idle / jobs',
    (r) => pair(f(relayCpuPerPeer(r, r.idle)), f(relayCpuPerPeer(r, r.busy))),
  ],
  [
    'relay connections, each (per contributor); RSS grown per connection (KiB)',
    (r) => `${each(r.relays?.map((x) => x.conns))} (${f(r.relayConnsPerPeer)}); ${relayRssPerConn(r)}`,
  ],
  [
    'relay RSS, each (MiB; before any peer)',
    (r) => `${each(r.relays?.map((x) => x.rssMiB))} (${each(r.relays?.map((x) => x.baseRssMiB))})`,
  ],
  [
    'adverts per peer per min, idle: messages / KiB',
    (r) => pair(f(r.idle?.adverts.msgsPerMin, 0), f(r.idle?.adverts.kibPerMin, 0)),
  ],
  [
    'adverts per peer per min, jobs: messages / KiB',
    (r) => pair(f(r.busy?.adverts.msgsPerMin, 0), f(r.busy?.adverts.kibPerMin, 0)),
  ],
  ['adverts to the requester per min, jobs', (r) => f(r.busy?.requesterAdvertsPerMin, 0)],
  [
    'contributor direct links mean / max (dialled mean)',
    (r) =>
      `${f(r.links?.contributorsMean)} / ${r.links?.contributorsMax ?? '–'} (${f(r.links?.contributorsDialledMean)})`,
  ],
  [
    'requester direct links: before jobs / during',
    (r) => pair(`${r.links?.requesterWarm ?? '–'}`, `${r.links?.requesterBusy ?? '–'}`),
  ],
  ['contributors that served a job in the window', (r) => `${r.links?.contributorsServing ?? '–'}`],
  [
    'requester after the jobs: relay; contributors known; adverts since its start; their age p50 (s); relay score',
    (r) => {
      const q = r.requester
      return q ? `${q.relay}; ${q.known}; ${q.adverts}; ${f(q.advertAgeS)}; ${q.relayScore ?? '–'}` : '–'
    },
  ],
  [
    'machine cores busy, idle / jobs (of 2)',
    (r) => pair(f(r.idle?.machineCores, 2), f(r.busy?.machineCores, 2)),
  ],
  [
    'peer processes: cores idle / jobs; RSS per peer (MiB)',
    (r) =>
      `${pair(f(r.idle?.peersCores, 2), f(r.busy?.peersCores, 2))}; ${f((r.peersRssMiB ?? Number.NaN) / r.n)}`,
  ],
  ['load average (1 min) at start → end', (r) => `${f(r.loadAtStart[0], 2)} → ${f(r.loadAtEnd?.[0], 2)}`],
]

export function scaleTable(rows: ScaleRow[]): string {
  const out = [
    `| figure | ${rows.map((r) => `${r.n} peers`).join(' | ')} |`,
    `| --- | ${rows.map(() => '---').join(' | ')} |`,
    ...FIGURES.map(([figure, pick]) => `| ${figure} | ${rows.map(pick).join(' | ')} |`),
  ]
  const notes = rows.flatMap((r) => [
    ...(r.limit ? [`- ${r.n} peers stopped short: ${r.limit}`] : []),
    ...r.errors.slice(0, 3).map((e) => `- ${r.n} peers: ${e.split('\n')[0]}`),
  ])
  const tail = notes.length ? `\n\n${notes.join('\n')}` : ''
  return `### Scale (Node peers, 2 relays, loopback)\n\n${out.join('\n')}${tail}`
}
