/** The section tables of the bench report (bench/report.ts assembles them). */

import type { ColdStart } from './cold-start.ts'
import type { Settled } from './cpu.ts'
import type { DispatchRow } from './dispatch.ts'
import type { EngineRow } from './engine.ts'
import type { NatBench } from './nat.ts'
import type { Results } from './report.ts'
import { MiB, median, round } from './stats.ts'
import type { Throughput } from './throughput.ts'

export const f = (x: number | undefined, d = 2) =>
  x === undefined || !Number.isFinite(x) ? '–' : String(round(x, d))
const line = (cells: (string | number)[]) => `| ${cells.join(' | ')} |`
export const table = (head: string[], rows: (string | number)[][]) =>
  [line(head), `|${head.map(() => '---').join('|')}|`, ...rows.map(line)].join('\n')
export const verdict = (ok: boolean | undefined) => (ok === undefined ? '–' : ok ? 'met' : 'not met')
export const cs = (r: Results, pick: (c: ColdStart) => number | undefined) =>
  median((r.coldStart ?? []).map((c) => pick(c) ?? Number.NaN))

export function dispatch(r: Results, rows: DispatchRow[]): string {
  // The physical floor of (b): job and result frames at the raw data channel's speed in this run.
  const raw = r.transport?.rows.find((t) => t.msgKiB === 64)?.rawMiBs
  const floor = (m: string) => {
    const p = r.profile?.[m]
    const bytes = (p?.['bytes: job frame'] ?? Number.NaN) + (p?.['bytes: result frame'] ?? Number.NaN)
    return raw ? (bytes / (raw * MiB)) * 1000 : Number.NaN
  }
  const head = [
    'model',
    'a p50',
    'a p95',
    'b p50',
    'b p95',
    'b/a p50',
    'b/a p95',
    'added p50',
    'transfer floor',
  ]
  const body = rows.map((d) => [
    d.model,
    ...[d.local.p50, d.local.p95, d.remote.p50, d.remote.p95, d.ratioP50, d.ratioP95, d.addedP50Ms].map((x) =>
      f(x),
    ),
    f(floor(d.model)),
    f(d.rtt.p50),
    f(d.wire?.p50),
    f(d.remote.p50 - d.rtt.p50),
    f(d.unpersisted?.p50),
    `${f(d.localRun.p50)} / ${f(d.remoteRun.p50)}`,
  ])
  return `## 1. Dispatch overhead (ms; a = the requester's own worker, b = one remote contributor; 1-thread WASM both)

${table([...head, 'client RTT p50', 'wire + checks p50', 'bookkeeping p50', 'b p50, persist: false', 'run p50 a / b'], body)}

added = b − a. Transfer floor = (job + result frame bytes) / the raw data channel's MiB/s (64 KiB messages, section 3).${echoFloor(r)}
Client RTT = sign → verified result (src/jobs/client.ts). Wire + checks = client RTT minus the contributor's
time from admitted job to outputs (its receipt's queue + run): transfer, digests, signatures, stream hops.
Bookkeeping = b p50 − client RTT p50: the requester's durable job records (IndexedDB) and quorum logic.
b p50, persist: false = b submitted with \`persist: false\` (no IndexedDB writes), interleaved with a and b.${failed(rows)}`
}

/** A lone message's round trip is slower than bytes / bandwidth: the raw echo of a job-sized frame is the floor. */
function echoFloor(r: Results): string {
  const e = r.transport?.echo
  if (!e?.rawFrame) return ''
  const idle = e.rawFrameIdle
    ? `, and ${f(e.rawFrameIdle.p50)} ms when the round trips are 12 ms apart (as dispatch jobs are: the channel idles in between)`
    : ''
  return `\nFloor for the bench-* rows: a raw RTCDataChannel round trip of ${e.frameBytes} bytes each way takes ${f(e.rawFrame.p50)} ms p50 back to back here${idle} (libp2p reused stream, back to back: ${f(e.libp2pReusedFrame?.p50)} ms).`
}

function failed(rows: DispatchRow[]): string {
  const n = rows.reduce((a, d) => a + (d.failures?.length ?? 0), 0)
  return n ? `\nFailed and retried: ${n} job(s), first: ${rows.find((d) => d.failures)?.failures?.[0]}` : ''
}

export function profile(p: NonNullable<Results['profile']>): string {
  const models = Object.keys(p)
  const steps = Object.keys(p[models[0]!] ?? {})
  const rows = steps.map((s) => [s, ...models.map((m) => f(p[m]![s], s.startsWith('bytes') ? 0 : 2))])
  return `### Job protocol CPU per step (median ms, each step alone in one tab)\n\n${table(['step', ...models], rows)}`
}

export function probes(p: NonNullable<Results['probes']>): string {
  const models = Object.keys(p)
  const sides = ['requester', 'contributor'] as const
  const keys = sides.flatMap((side) =>
    [...new Set(models.flatMap((m) => Object.keys(p[m]![side] ?? {})))]
      .sort()
      .map((op) => [side, op] as const),
  )
  const rows = keys.map(([side, op]) => [
    side,
    op,
    ...models.map((m) => {
      const t = p[m]![side]?.[op]
      return t ? `${f(t.n, 1)} / ${f(t.kib, 0)} / ${f(t.ms, 1)}` : '–'
    }),
  ])
  return `### What one job really does (probes in both tabs; per job: calls / KiB / ms until done)\n\n${table(['side', 'operation', ...models], rows)}`
}

/** "model 2.1 s, 3.9 s CPU" per entry: what a first run's background compilation cost. */
export function settled(s: Record<string, Settled>): string {
  return Object.entries(s)
    .map(
      ([k, v]) =>
        `${k} ${f(v.waitedMs / 1000, 1)} s, ${f(v.cpuMs / 1000, 1)} s CPU${v.settled ? '' : ' (still busy)'}`,
    )
    .join('; ')
}

const nativeLine = (t: Throughput) =>
  Object.entries(t.native)
    .map(
      ([m, n]) =>
        `${m} ${Object.keys(n.msPerRun)
          .map((k) => `${k}: ${f(n.msPerRun[Number(k)]!, 1)} ms → ${f(n.speedup[Number(k)]!)}×`)
          .join(', ')}`,
    )
    .join('; ')

export function throughput(t: Throughput): string {
  const loc = Object.entries(t.localJobsPerS)
    .map(([m, v]) => `${m} ${f(v)} jobs/s`)
    .join(', ')
  const rows = t.rows.map((x) => [
    x.persist === false ? `${x.model}, persist: false` : x.model,
    x.contributors,
    x.jobs,
    f(x.jobsPerS),
    x.rounds && x.contributors > 1
      ? `${f(x.speedup)}× (${x.rounds.speedup.map((v) => f(v)).join(' / ')})`
      : `${f(x.speedup)}×`,
    f(x.efficiency),
    x.byWorker.join(' / '),
    f(x.computeMsPerJob, 1),
    f(sum(x.cpuMsPerJob), 1),
    f(x.coresBusy),
  ])
  const head = ['model', 'contributors', 'jobs', 'jobs/s', 'speedup', 'efficiency', 'jobs per worker']
  const cpu = (c: Record<string, number>) =>
    Object.entries(c)
      .filter(([, ms]) => ms >= 0.5)
      .sort((a, b) => b[1] - a[1])
      .map(([k, ms]) => `${k} ${f(ms, 1)}`)
      .join(', ')
  const two = t.rows.find((x) => x.contributors === 2 && x.persist !== false)
  const off = t.rows.find((x) => x.contributors === 2 && x.persist === false)
  const offLine = off
    ? `\nThe same with \`persist: false\` (the requester writes nothing to IndexedDB): ${cpu(off.cpuMsPerJob)}.`
    : ''
  return `## 2. Throughput (1-thread WASM per contributor tab; the requester's own worker alone: ${loc})

The requester is a tab in a Chromium of its own with an on-disk profile, as a person's browser is (the swarm's contexts are off the record, with IndexedDB in memory); the contributors are tabs of the swarm's browser.

${table([...head, 'compute ms / job', 'CPU ms / job, all processes', 'cores busy'], rows)}

${roundsLine(t)}CPU ms per job by process kind${two ? `, ${two.model} on 2 contributors: ${cpu(two.cpuMsPerJob)}` : ''}.${offLine}
${two ? `By thread, that row (ms per job; the requester's browser + the contributors' browser): ${byThread(two.cpuMsPerJobByThread)}.` : ''}${off ? `\nWith \`persist: false\`: ${byThread(off.cpuMsPerJobByThread)}.` : ''}
The job path's ceiling (mlp-tiny, ~0 compute, all contributors): ${f(t.ceiling.jobsPerS)} jobs/s, ${f(sum(t.ceiling.cpuMsPerJob), 1)} CPU ms per job (${cpu(t.ceiling.cpuMsPerJob)}), ${f(t.ceiling.coresBusy)} cores busy.
Native reference, the same counts as onnxruntime-node processes at once (1 thread each, ms per run → speedup): ${nativeLine(t)}.${rawLine(t)}
Each model ran once on every tab first, and each batch waited for the tabs to go quiet: ${settled(t.settled)}.`
}

const sum = (c: Record<string, number>) => Object.values(c).reduce((a, b) => a + b, 0)

/** The raw-channel batches: what tabs, WebRTC and ORT-web allow without the job protocol. */
function rawLine(t: Throughput): string {
  if (!t.raw) return ''
  const rows = t.raw.rows
    .map(
      (r) =>
        `${r.contributors}: ${f(r.jobsPerS)} jobs/s → ${f(r.speedup)}× (${(r.rounds?.speedup ?? [r.speedup]).map((v) => f(v)).join(' / ')}), ${f(sum(r.cpuMsPerJob), 1)} CPU ms/job`,
    )
    .join('; ')
  const two = t.raw.rows.find((r) => r.contributors === 2)
  const threads = two ? `\nBy thread, its 2-contributor batches: ${byThread(two.cpuMsPerJobByThread)}.` : ''
  return `\nRaw-channel reference, ${t.raw.model} (the input's bytes over a raw RTCDataChannel to each contributor tab, its worker runs it, the output's bytes back; no libp2p, signatures, CIDs or records): ${rows}.${threads}`
}

/** Thread labels (bench/cpu.ts `threadSample`) by what they do for a job; the rest is 'other'. */
const THREAD_GROUPS: [string, RegExp][] = [
  ['inference workers', /\/DedicatedWorker$/],
  ['page main threads', /renderer\/main$/],
  ['WebRTC and I/O threads (sockets, IPC)', /WebRTC|ChildIOT|IOThread|network service\//],
  ['browser thread pools (IndexedDB)', /browser process\/ThreadPool/],
  ['renderer thread pools (WebCrypto, GC)', /renderer\/ThreadPool/],
  ['browser main threads', /browser process\/main$/],
  ['relay', /^relay\//],
  ["the bench's DevTools pipe", /DevToolsPipe/],
]

function byThread(c: Record<string, number> | undefined): string {
  if (!c) return '–'
  const groups = new Map<string, { req: number; rest: number }>()
  for (const [label, ms] of Object.entries(c)) {
    const name = THREAD_GROUPS.find(([, re]) => re.test(label))?.[0] ?? 'other'
    const g = groups.get(name) ?? { req: 0, rest: 0 }
    if (label.startsWith('requester ')) g.req += ms
    else g.rest += ms
    groups.set(name, g)
  }
  return [...groups]
    .sort((a, b) => b[1].req + b[1].rest - (a[1].req + a[1].rest))
    .map(([name, g]) => `${name} ${f(g.req + g.rest, 1)} (${f(g.req, 1)} + ${f(g.rest, 1)})`)
    .join(', ')
}

/** Which models ran in interleaved rounds, and how their rows are summarised. */
function roundsLine(t: Throughput): string {
  const m = [
    ...new Set(t.rows.filter((x) => x.rounds).map((x) => `${x.model} (${x.rounds!.jobsPerS.length})`)),
  ]
  if (m.length === 0) return ''
  const off = t.rows.some((x) => x.rounds && x.persist === false) ? ', then the persist: false counts' : ''
  return `Rounds: ${m.join(', ')} ran its counts in interleaved rounds (1, 2, 3 contributors${off}, in turn); its jobs/s is the median, its speedup the median of the speedups paired within each round (in brackets), jobs and CPU are totals over the rounds.\n`
}

export function transport(t: NonNullable<Results['transport']>): string {
  const e = t.echo
  const range = (v?: number[]) => (v?.length ? `${f(Math.min(...v))}–${f(Math.max(...v))}` : '–')
  const rows = t.rows.map((x) => [
    `${x.msgKiB} KiB`,
    x.mib,
    f(x.libp2pMiBs, 1),
    f(x.rawMiBs, 1),
    f(x.ratio),
    range(x.pairRatios),
  ])
  const d = (x: { p50: number; p95: number }) => `${f(x.p50)} / ${f(x.p95)}`
  return `## 3. Transport (MiB/s between the same two tabs, median of ${t.rows[0]?.reps ?? 0} pairs, each pair in the other order from the last)

${table(['message', 'MiB sent', 'libp2p stream', 'raw RTCDataChannel', 'ratio', 'ratio of single pairs'], rows)}

32-byte round trip p50 / p95 (ms): raw channel ${d(e.raw)}, libp2p reused stream ${d(e.libp2pReused)}, libp2p new stream each time ${d(e.libp2pNewStream)}${
    e.rawFrame && e.libp2pReusedFrame
      ? `\n${e.frameBytes}-byte round trip p50 / p95 (ms): raw channel ${d(e.rawFrame)}${e.rawFrameIdle ? ` (12 ms apart: ${d(e.rawFrameIdle)})` : ''}, libp2p reused stream ${d(e.libp2pReusedFrame)}`
      : ''
  }`
}

export function modelTransfer(t: Results['modelTransfer']): string {
  if (!t?.rows) return `### Model transfer\n\n${t?.status ?? 'not run'}`
  const range = (xs: number[] | undefined) =>
    xs?.length ? `${f(Math.min(...xs), 1)}–${f(Math.max(...xs), 1)}` : '–'
  const rows = t.rows.map((x) => [
    x.model,
    f(x.mib, 1),
    `${f(x.onePeerMiBs, 1)} (${range(x.runs?.onePeer)})`,
    `${f(x.twoPeersMiBs, 1)} (${range(x.runs?.twoPeers)})`,
    `${f(x.rawMiBs, 1)} (${x.rawMessageKiB ?? '–'} KiB)`,
    `${f(x.twoRawMiBs, 1)} (${range(x.runs?.twoRaw)})`,
    f(x.onePeerVsRaw),
    f(x.twoPeersVsRaw),
    f(x.twoRawVsRaw),
    f(x.coldOnePeerMiBs, 1),
  ])
  const head = [
    'model',
    'MiB',
    '1 peer MiB/s (range)',
    '2 peers MiB/s (range)',
    'raw channel MiB/s',
    '2 raw channels at once MiB/s',
    '1 peer / raw',
    '2 peers / raw',
    '2 raw / raw',
    'cold 1 peer MiB/s',
  ]
  return `### Model transfer (\`/peer-compute/model/1.0.0\`, contributor → requester, median of ${t.rows[0]!.reps}; raw = 64 or 256 KiB messages, whichever was faster in a warm-up send of the whole model, which does not count; cold = a provider's first upload, its read and hashing included)\n\n${table(head, rows)}\n\n2 raw channels at once = each contributor sends half the model on a raw channel of its own, at the same time: what a second peer can add on this machine at all. Where 2 raw / raw is not above 1, no 2-peer fetch can beat one raw channel here.`
}

export function coldStart(r: Results): string {
  const n = r.coldStart!.length
  const keys = [
    'interactiveMs',
    'relayConnectedMs',
    'firstAdvertMs',
    'firstDirectMs',
    'engineReadyMs',
    'readyMs',
    'firstResultMs',
  ] as const
  const row = [
    ...keys.map((k) =>
      f(
        cs(r, (c) => c.requester[k]),
        0,
      ),
    ),
    f(
      cs(r, (c) => c.firstJob.roundTripMs),
      0,
    ),
    f(
      cs(r, (c) => c.firstJob.queueMs),
      0,
    ),
  ]
  const head = [
    'interactive',
    'relay',
    'first advert',
    'direct link',
    'worker ready',
    'ready',
    'first remote result',
  ]
  return `## 4. Cold start (ms since the second tab's navigation; median of ${n}; app pages)\n\n${table(
    [...head, 'first job RTT', 'of which contributor queue (model + session)'],
    [row],
  )}`
}

export function engine(e: NonNullable<Results['engine']>): string {
  const cols = ['wasm-1', 'wasm-N', 'auto', 'webgpu', 'node-1', 'node-N']
  const rows = e.rows.map((x) => [
    x.model,
    ...cols.map((c) => f(x.p50[c])),
    x.calibrations?.length ? `${x.calibrations.map((c) => c.threads).join(' → ')} thr` : '–',
    f(x.choiceVsBest),
    f(x.autoVsBest),
    f(x.wasmVsNative),
    `${f(x.wasmVsNativeByThreads?.[1])} · ${f(x.wasmVsNativeByThreads?.N)}`,
    x.calibrations?.[0]
      ? `${f(x.calibrations[0].wallMs / 1000, 1)} s (${f(x.calibrations[0].warmMs / 1000, 1)} s, ${x.calibrations[0].pairs} pairs)`
      : '–',
    x.maxAbsDiffNative.toExponential(1),
    x.maxAbsDiffWeb === 0 ? 'bitwise equal' : x.maxAbsDiffWeb.toExponential(1),
  ])
  const head = [
    ...cols,
    'auto chose (each calibration)',
    'chosen / best',
    'auto runs / best',
    'best WASM / native',
    '1/1 · N/N native',
    'first-job calibration (warm-up, pairs)',
    'max |web − native|',
    'web 1 vs N thr',
  ]
  const ops = e.rows.filter((x) => x.ops).map((x) => opsTable(x.model, x.ops!))
  const sustained = e.rows.flatMap((x) => {
    const st = x.sustained
    if (!st) return []
    const first = f(median(st.runMs.slice(0, 10)), 0)
    const n = st.after + st.runMs.length
    return [
      `${x.model}, ${st.label}, ${st.runMs.length} more runs back to back: runs ${st.after + 1}–${st.after + 10} ${first} ms, runs ${n - 9}–${n} ${f(st.p50Last10, 0)} ms (p50).`,
    ]
  })
  const title =
    `## 5. Engine (p50 run ms in the worker; N = ${e.maxThreads}; webgpu = SwiftShader's fallback adapter; ` +
    `each setting in a tab of its own; 'auto' started warm, re-checking after 8 and 64 runs as in the app; timed after 30 untimed runs of each (quick mode: none); each timed run starts 30 ms after the last)`
  return [`${title}\n\n${table(['model', ...head], rows)}`, ...sustained, ...ops].join('\n\n')
}

/** ORT's profiler on both sides: the op types that take the browser's time, against native. */
function opsTable(model: string, o: NonNullable<EngineRow['ops']>): string {
  const web = sum(o.web.msByOp)
  const nat = sum(o.native.msByOp)
  const types = Object.keys({ ...o.web.msByOp, ...o.native.msByOp }).sort(
    (a, b) => (o.web.msByOp[b] ?? 0) - (o.web.msByOp[a] ?? 0),
  )
  const rows = types.map((t) => {
    const w = o.web.msByOp[t] ?? 0
    const n = o.native.msByOp[t] ?? 0
    return [t, f(w, 1), f(n, 1), w && n ? f(w / n) : '–', `${f((100 * w) / web, 0)} %`]
  })
  // Native's NCHWc Conv carries its activation inside; the browser's runs it as FusedConv.
  const conv = (m: Record<string, number>) => (m.Conv ?? 0) + (m.FusedConv ?? 0)
  const [wc, nc] = [conv(o.web.msByOp), conv(o.native.msByOp)]
  if (o.web.msByOp.FusedConv)
    rows.push(['Conv + FusedConv', f(wc, 1), f(nc, 1), nc ? f(wc / nc) : '–', `${f((100 * wc) / web, 0)} %`])
  rows.push(['all kernels', f(web, 1), f(nat, 1), f(web / nat), '100 %'])
  rows.push(["ORT's run", f(o.web.runMs, 1), f(o.native.runMs, 1), f(o.web.runMs / o.native.runMs), '–'])
  return `### Where ${model}'s time goes (ORT's profiler, 1 thread each side, ms per run over ${o.web.runs} runs; native may fuse ops the browser build runs apart, and converts layouts for its NCHWc kernels)\n\n${table(['op type', 'browser WASM', 'native', 'ratio', 'share of browser'], rows)}`
}

export function verification(v: NonNullable<Results['verification']>): string {
  if (!v.rows) return `## 6. Verification cost\n\n${v.status}`
  const rows = v.rows.map((x) => [
    x.policy,
    x.jobs,
    f(x.replicas),
    f(x.replicasLastHalf),
    f(x.computeMsPerResult, 1),
    f(x.wallMsPerResult, 1),
    `${f(x.costVsR1)}×`,
  ])
  const head = [
    'policy',
    'jobs',
    'replicas / result',
    'last half',
    'compute ms / result',
    'wall ms / result',
    'vs r=1',
  ]
  return `## 6. Verification cost (${v.model}, 3 contributors, 3 jobs in flight)\n\n${table(head, rows)}`
}

export function nat(n: NatBench): string {
  const ms = (xs: number[]) => `${f(median(xs), 0)} (${xs.map((x) => f(x, 0)).join(', ')})`
  const link = Object.entries(n.link ?? {}).map(([path, l]) => [
    path,
    l.path ?? '–',
    ms(l.directMs),
    ms(l.resultMs),
  ])
  const tp = n.throughput
  const cpu = n.turnCpu
  return [
    '### Across NAT (the lab: plain NAT over STUN, symmetric NAT over TURN)',
    'A fresh requester tab per sample, after one unrecorded warm-up; ms from the first advert either tab saw of the other.',
    table(['path', 'link path', 'advert → direct, p50 (samples)', 'advert → first result (bench-1ms)'], link),
    tp
      ? `${tp.model}, ${tp.jobs} jobs per batch on one contributor, 4 outstanding: through STUN ${tp.stun.map((x) => f(x, 1)).join(', ')} jobs/s, through TURN ${tp.turn.map((x) => f(x, 1)).join(', ')} jobs/s; TURN / STUN ${f(tp.turnVsStun)}.`
      : '',
    cpu
      ? `coturn over the TURN batches: ${f(cpu.cpuMs, 0)} ms of CPU for ${f(cpu.mib, 1)} MiB of UDP received (relayed, plus STUN checks): ${f(cpu.msPerMiB, 1)} ms per MiB.`
      : '',
  ]
    .filter(Boolean)
    .join('\n\n')
}
