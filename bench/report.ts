/** Markdown for `npm run bench`: the targets first, then one table per section. */

import type { ColdStart } from './cold-start.ts'
import type { Settled } from './cpu.ts'
import type { DispatchRow } from './dispatch.ts'
import { type DisputeRow, disputeTable } from './dispute.ts'
import type { EngineRow } from './engine.ts'
import type { TransferRow } from './model-transfer.ts'
import type { NatBench } from './nat.ts'
import {
  coldStart,
  cs,
  dispatch,
  engine,
  f,
  modelTransfer,
  nat,
  probes,
  profile,
  settled,
  table,
  throughput,
  transport,
  verdict,
  verification,
} from './report-sections.ts'
import { type ScaleRow, scaleTable, scaleTargets } from './scale-report.ts'
import { median } from './stats.ts'
import type { Throughput } from './throughput.ts'
import type { EchoRow, TransportRow } from './transport.ts'
import type { VerificationRow } from './verification.ts'

type Tally = { n: number; kib: number; ms: number }

export interface Results {
  meta: Record<string, unknown>
  dispatch?: DispatchRow[]
  /** Median ms per job-protocol step, per model. */
  profile?: Record<string, Record<string, number>>
  /** Per job, per side: what the probes counted. */
  probes?: Record<string, Record<'requester' | 'contributor', Record<string, Tally>>>
  throughput?: Throughput
  /** After each tab's first run: wall and CPU ms until V8's background compilation was done. */
  warmUp?: Settled
  /** The swarm with no job running (after warm-up): adverts, keep-alives, the relay. */
  idle?: { cores: number; msPerS: Record<string, number> }
  transport?: { rows: TransportRow[]; echo: EchoRow }
  modelTransfer?: { status: string; rows?: TransferRow[] }
  coldStart?: ColdStart[]
  engine?: { rows: EngineRow[]; maxThreads: number; swiftShaderAutoEp?: string }
  verification?: { status: string; model?: string; rows?: VerificationRow[] }
  nat?: NatBench
  /** Node peers on two relays at several swarm sizes (bench/scale.ts). */
  scale?: ScaleRow[]
  /** A dispute against a third replica (bench/dispute.ts). */
  dispute?: DisputeRow[]
}

/** [figure, measured, target, verdict] for every target and reference figure the run has. */
function targetRows(r: Results): string[][] {
  const rows: string[][] = []
  const add = (figure: string, measured: string, target: string, ok?: boolean) =>
    rows.push([figure, measured, target, verdict(ok)])
  const m = r.dispatch?.find((d) => d.model === 'bench-10ms')
  if (m) {
    add('dispatch b/a p50, bench-10ms (16 KiB in/out)', f(m.ratioP50), '≤ 1.10', m.ratioP50 <= 1.1)
    add('dispatch added p50, bench-10ms', `${f(m.addedP50Ms, 1)} ms`, '≤ 2 ms', m.addedP50Ms <= 2)
    add('the same, submitted with `persist: false`', `${f(m.addedP50UnpersistedMs, 1)} ms`, 'report')
    const e = r.transport?.echo
    const floor = e?.rawFrameIdle ?? e?.rawFrame
    if (floor)
      add(
        `the floor: a raw data-channel round trip of the job's bytes (${e?.frameBytes} B each way${e?.rawFrameIdle ? ', 12 ms apart' : ''})`,
        `${f(floor.p50, 1)} ms`,
        'report',
      )
  }
  for (const d of r.dispatch ?? []) {
    if (d.model !== 'bench-10ms') add(`dispatch added p50, ${d.model}`, `${f(d.addedP50Ms, 1)} ms`, 'report')
  }
  const two = r.throughput?.rows.find((t) => t.contributors === 2 && t.persist !== false)
  if (two) {
    add(`throughput, 2 contributors (${two.model})`, `${f(two.speedup)}×`, '≥ 1.8×', two.speedup >= 1.8)
    const off = r.throughput?.rows.find(
      (t) => t.contributors === 2 && t.persist === false && t.model === two.model,
    )
    if (off)
      add(
        'the same, jobs submitted with `persist: false` (no job records; over its own 1-contributor batch)',
        `${f(off.speedup)}×`,
        'report',
      )
    const native = r.throughput?.native[two.model]?.speedup[2]
    if (native)
      add(`the same on 2 onnxruntime-node processes (what the cores allow)`, `${f(native)}×`, 'report')
    const raw = r.throughput?.raw?.rows.find((x) => x.contributors === 2)
    if (raw && r.throughput?.raw?.model === two.model)
      add(
        'the same over raw data channels between the same tabs (no job protocol: what Chromium and ORT-web allow)',
        `${f(raw.speedup)}×`,
        'report',
      )
  }
  for (const t of r.transport?.rows ?? []) {
    add(`libp2p stream / raw channel, ${t.msgKiB} KiB messages`, f(t.ratio), '≥ 0.9', t.ratio >= 0.9)
  }
  for (const t of r.modelTransfer?.rows ?? []) {
    add(`model transfer / raw channel, ${t.model}, 1 peer`, f(t.onePeerVsRaw), '≥ 0.9', t.onePeerVsRaw >= 0.9)
    add(`model transfer / raw channel, ${t.model}, 2 peers`, f(t.twoPeersVsRaw), '> 1', t.twoPeersVsRaw > 1)
    if (t.twoRawMiBs) {
      add(
        `the ceiling: 2 raw channels at once / 1 raw channel, ${t.model} (what a second peer can add here)`,
        f(t.twoRawVsRaw),
        'report',
      )
      add(
        `model transfer, 2 peers / 2 raw channels at once, ${t.model}`,
        f(t.twoPeersMiBs / t.twoRawMiBs),
        'report',
      )
    }
  }
  if (!r.modelTransfer?.rows) add('model transfer / raw', r.modelTransfer?.status ?? 'not run', '≥ 0.9')
  if (r.coldStart?.length) {
    const interactive = cs(r, (c) => c.requester.interactiveMs)
    add('cold start: app interactive', `${f(interactive, 0)} ms`, '< 1000 ms', interactive < 1000)
    const ready = cs(r, (c) => c.requester.readyMs)
    const first = cs(r, (c) => c.requester.firstResultMs)
    add('cold start: ready (relay + worker)', `${f(ready, 0)} ms`, '≤ 1000 ms', ready <= 1000)
    add('cold start: first remote result', `${f(first, 0)} ms`, '≤ 2000 ms', first <= 2000)
  }
  for (const e of r.engine?.rows ?? []) {
    const got = `${f(e.choiceVsBest)} (chose ${e.autoThreads ?? '?'} thr; own runs ${f(e.autoVsBest)})`
    add(`auto threads: chosen / best fixed, ${e.model}`, got, '≤ 1.05', e.choiceVsBest <= 1.05)
    const st = e.sustained
    if (st?.label === 'wasm-N' && e.autoThreads) {
      // After its ~24th run the N-thread setting runs at its sustained speed: best fixed from then on.
      const best = Math.min(e.p50['wasm-1']!, st.p50Last10)
      const chosen = e.autoThreads === 1 ? e.p50['wasm-1']! : st.p50Last10
      const got = `${f(chosen / best)} (own runs ${f(e.p50.auto! / best)})`
      add(`auto threads: chosen / best fixed, ${e.model}, N threads sustained`, got, 'report')
    }
  }
  const det = r.engine?.rows.find((e) => e.model === 'ppocr-det')
  if (det) {
    const same = det.wasmVsNativeSame
    add(
      `PP-OCR det: best browser WASM (${det.bestWasm}) / native, same threads`,
      f(same),
      '≤ 2.5',
      same <= 2.5,
    )
    add('PP-OCR det: best browser WASM / best native', f(det.wasmVsNative), 'report')
    const st = det.sustained
    if (st) {
      const n = st.after + st.runMs.length
      const got = `${f(st.p50Last10 / det.p50['node-N']!)} (${f(st.p50Last10, 0)} ms)`
      add(`PP-OCR det: ${st.label} runs ${n - 9}–${n} back to back / native N`, got, 'report')
    }
  }
  const ep = r.engine?.swiftShaderAutoEp
  if (ep) add("'auto' EP when only a fallback adapter exists", ep, 'wasm', ep === 'wasm')
  for (const x of r.verification?.rows ?? []) {
    add(
      `verification: replicas per result, ${x.policy}`,
      `${f(x.replicas)} (${f(x.costVsR1)}× r=1)`,
      'report',
    )
  }
  if (!r.verification?.rows) add('verification cost', r.verification?.status ?? 'not run', 'report')
  if (r.nat?.skipped) add('across NAT', r.nat.skipped, 'report')
  const targetMs = { loopback: 1000, stun: 1500, turn: 2500 }
  for (const [path, ms] of Object.entries(targetMs) as [keyof typeof targetMs, number][]) {
    const l = r.nat?.link?.[path]
    if (!l) continue
    const p50 = median(l.resultMs)
    add(`advert seen → first job result, ${path} (p50)`, `${f(p50, 0)} ms`, `≤ ${ms} ms`, p50 <= ms)
  }
  const tp = r.nat?.throughput
  if (tp)
    add(`${tp.model} jobs/s through TURN / through STUN`, f(tp.turnVsStun), '≥ 0.8', tp.turnVsStun >= 0.8)
  const cpu = r.nat?.turnCpu
  if (cpu) add('coturn CPU per MiB relayed', `${f(cpu.msPerMiB, 1)} ms`, 'report')
  for (const row of scaleTargets(r.scale ?? [])) add(...row)
  return rows
}

/** The targets table; with a baseline run, its figure for each row beside this run's. */
export function targets(r: Results, base?: Results): string {
  const rows = targetRows(r)
  if (!base) return table(['figure', 'measured', 'target', ''], rows)
  const was = new Map(targetRows(base).map(([figure, measured]) => [figure, measured]))
  const head = ['figure', 'measured', 'baseline', 'target', '']
  return table(
    head,
    rows.map(([figure = '', measured = '', ...rest]) => [figure, measured, was.get(figure) ?? '–', ...rest]),
  )
}

/** `base`: the committed baseline run (bench/results/baseline.json), compared in the targets table. */
export function markdown(r: Results, base?: Results): string {
  const against = base
    ? `\n\nBaseline: the run of ${base.meta.date} (${base.meta.machine}${base.meta.quick ? ', quick' : ''}).`
    : ''
  const out = [`## Targets${against}\n\n${targets(r, base)}`]
  if (r.warmUp)
    out.push(
      `Warm-up: every tab ran bench-100ms once; V8's background (TurboFan) compilation of ORT's .wasm then kept the machine busy for ${settled({ 'all tabs': r.warmUp })}. Every figure below is measured after it.`,
    )
  if (r.idle)
    out.push(
      `Idle swarm (4 tabs and the relay, no job running, 10 s): ${r.idle.cores.toFixed(3)} cores (${Object.entries(
        r.idle.msPerS,
      )
        .map(([k, v]) => `${k} ${v.toFixed(1)}`)
        .join(', ')} ms of CPU per s). Every core-second it takes is missing from the throughput rows.`,
    )
  if (r.dispatch) out.push(dispatch(r, r.dispatch))
  if (r.profile) out.push(profile(r.profile))
  if (r.probes) out.push(probes(r.probes))
  if (r.throughput) out.push(throughput(r.throughput))
  if (r.transport) out.push(transport(r.transport))
  out.push(modelTransfer(r.modelTransfer))
  if (r.coldStart?.length) out.push(coldStart(r))
  if (r.engine) out.push(engine(r.engine))
  if (r.verification) out.push(verification(r.verification))
  if (r.nat && !r.nat.skipped) out.push(nat(r.nat))
  if (r.scale?.length) out.push(scaleTable(r.scale))
  if (r.dispute?.length) out.push(disputeTable(r.dispute))
  out.push(`Machine: ${r.meta.machine}. ${r.meta.gpu}.`)
  return out.join('\n\n')
}
