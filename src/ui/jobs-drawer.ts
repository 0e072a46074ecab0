/**
 * One job in detail, in a modal `<dialog>` (focus kept inside, Escape closes): every replica, the
 * receipts with their signatures checked, the quorum record (export, verify offline), the policy it
 * was checked under and its tensors. Text only (textContent), never HTML from peers. The words for a
 * job's state and counts are in job-words.ts.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import type { Catalog } from '../models/catalog.ts'
import { InvalidReceiptError } from '../shared/errors.ts'
import type { JobRecord } from '../store/db.ts'
import type { CompareRule } from '../trust/policy.ts'
import { verifyQuorumRecord } from '../trust/quorum-record.ts'
import { parseReceipt, type Receipt, verifyReceipt } from '../trust/receipt.ts'
import { riskWords } from '../trust/risk.ts'
import { modelName, ms, replicaCounts, statusWords, when } from './job-words.ts'
import { policyWords, ruleWords } from './policy-words.ts'
import { formatBytes, short } from './render.ts'
import { downloadRecord } from './verify-view.ts'

export interface JobDrawer {
  /** Opens on `job`; when it closes, focus goes to `returnTo()` (the row's button, maybe redrawn). */
  open(job: JobRecord, returnTo: () => HTMLElement | null): void
  /** The list changed: the open job is redrawn if it did. */
  update(jobs: JobRecord[]): void
}

type Child = Node | string
type Tensors = { name: string; dtype: string; dims: number[] }[]

function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v)
  e.append(...children)
  return e
}

/** A peer id or CID, shortened, the full value in its title. */
const id = (full: string) => h('code', { title: full }, short(full))
/** A peer, marked when it is this tab (its own worker computed the replica: policy allowSelf). */
const peerCell = (peer: string, self: string) =>
  peer === self ? h('span', {}, id(peer), ' (this tab)') : id(peer)
const dims = (d: number[]) => (d.length ? d.join(' × ') : 'scalar')

/** A table in a focusable scrolling region (WCAG 2.1.1: keyboard users can scroll it). */
function table(
  label: string,
  heads: string[],
  rows: Child[][],
  cls: (col: number) => string = () => '',
): Node {
  const body = rows.map((r) => h('tr', {}, ...r.map((c, i) => h('td', cls(i) ? { class: cls(i) } : {}, c))))
  return h(
    'div',
    { class: 'scroll', role: 'region', 'aria-label': label, tabindex: '0', 'data-key': label },
    h(
      'table',
      {},
      h('thead', {}, h('tr', {}, ...heads.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, ...body),
    ),
  )
}

/** What a stored record holds, read defensively (stored bytes are not trusted blindly). */
interface RecordView {
  model: CID
  input: CID
  requester: string
  quorum: number
  compare: CompareRule
  members: { raw: unknown; receipt: Receipt | Error; outputs: Tensors }[]
}

function readRecord(bytes: Uint8Array): RecordView | Error {
  try {
    const r = dagCbor.decode(bytes) as Record<string, unknown>
    const model = CID.asCID(r.model)
    const input = CID.asCID(r.input)
    if (!model || !input || !Array.isArray(r.members)) throw new InvalidReceiptError('not a quorum record')
    const members = r.members.map((m: { receipt?: unknown; outputs?: unknown }) => {
      let receipt: Receipt | Error
      try {
        receipt = parseReceipt(m.receipt)
      } catch (err) {
        receipt = err as Error
      }
      const outs = (m.outputs ?? {}) as Record<string, { dtype?: unknown; dims?: unknown }>
      const outputs = Object.entries(outs).map(([name, t]) => ({
        name,
        dtype: String(t?.dtype),
        dims: Array.isArray(t?.dims) ? (t.dims as number[]) : [],
      }))
      return { raw: m.receipt, receipt, outputs }
    })
    return {
      model,
      input,
      requester: String(r.requester),
      quorum: Number(r.quorum),
      compare: r.compare as CompareRule,
      members,
    }
  } catch (err) {
    return err as Error
  }
}

const errorWords = (err: unknown) => `${(err as Error).name}: ${(err as Error).message}`

const OUTCOME: Record<string, [string, '' | 'ok' | 'bad']> = {
  dispatched: ['… running', ''],
  failed: ['✗ failed (link or worker error)', 'bad'],
  timedOut: ['✗ timed out', 'bad'],
  forged: ['✗ forged: signature or output does not check', 'bad'],
  lost: ['lost: the page went away while it ran', ''],
  busy: ['busy: retried elsewhere', ''],
  refused: ['refused', ''],
}

/** A replica's outcome in words: an answer agreed, disagreed, or stood alone (no quorum). */
function outcome(
  job: JobRecord,
  r: { peer: string; status: string; convicted?: boolean },
): [string, '' | 'ok' | 'bad'] {
  if (r.status !== 'ok') return OUTCOME[r.status] ?? [r.status, '']
  if (r.convicted) return ['✗ proved wrong by a dispute', 'bad']
  if (job.status !== 'verified') return ['answered (no quorum)', '']
  return job.workers?.includes(r.peer) ? ['✓ agreed', 'ok'] : ['✗ disagreed', 'bad']
}

function summary(job: JobRecord, catalog: Catalog): Node {
  const s = statusWords(job)
  const tile = (k: string, v: Child, cls = '') =>
    h('div', {}, h('dt', {}, k), h('dd', cls ? { class: cls } : {}, v))
  return h(
    'dl',
    { class: 'tiles' },
    tile('Status', s.text, s.cls),
    tile('Model', modelName(job, catalog)),
    tile('Submitted', when(job.submittedAt)),
    tile('Took', job.finishedAt ? ms(job.finishedAt - job.submittedAt) : '—'),
    tile('Replicas', replicaCounts(job)),
    ...(job.risk !== undefined ? [tile('Stated risk', riskWords(job.risk))] : []),
  )
}

function replicas(job: JobRecord, byWorker: Map<string, Receipt>, self: string): Node {
  const reps = job.replicas ?? []
  if (!reps.length) return h('p', { class: 'hint' }, 'No replica dispatched yet.')
  const rows = reps.map((r) => {
    const [words, cls] = outcome(job, r)
    const rc = byWorker.get(r.peer)?.body
    // The reason sits under the outcome, not in a last column: on a phone it stays in view.
    const why = r.error ? [h('span', { class: 'why' }, r.error)] : []
    return [
      peerCell(r.peer, self),
      h('span', {}, h('span', cls ? { class: cls } : {}, words), ...why),
      ms(r.ms),
      rc ? ms(rc.timing.runUs / 1000) : '—',
      rc?.ep ?? '—',
    ]
  })
  return table('Replicas', ['Peer', 'Outcome, and why', 'Round trip', 'Run', 'EP'], rows, (i) =>
    i === 1 ? 'outcome' : '',
  )
}

function receipts(rec: RecordView, self: string): Node {
  const rows = rec.members.map((m) => {
    const sig = h('span', { 'data-sig': '' }, 'checking…')
    if (m.receipt instanceof Error) {
      sig.textContent = `✗ ${errorWords(m.receipt)}`
      sig.className = 'bad'
      return [sig, '—', '—', '—', '—', '—']
    }
    const b = m.receipt.body
    verifyReceipt(m.raw, { model: rec.model, input: rec.input, requester: rec.requester }).then(
      () => Object.assign(sig, { textContent: '✓ signature verifies', className: 'ok' }),
      (err) => Object.assign(sig, { textContent: `✗ ${errorWords(err)}`, className: 'bad' }),
    )
    return [
      peerCell(b.worker, self),
      sig,
      id(b.job.toString()),
      id(b.output.toString()),
      `${b.ep} · ${b.adapter}`,
      `run ${ms(b.timing.runUs / 1000)}, queued ${ms(b.timing.queueUs / 1000)}`,
      when(b.ts),
    ]
  })
  return table(
    'Receipts',
    ['Signer', 'Signature', 'Job CID', 'Output CID', 'EP · adapter', 'Timing', 'Signed'],
    rows,
  )
}

function recordPanel(job: JobRecord, rec: RecordView | Error): Node {
  const out = h('output', { 'aria-live': 'polite', class: 'record-result' })
  const exp = h('button', { type: 'button', 'data-key': 'export' }, 'Export (.cbor)')
  exp.addEventListener('click', () => downloadRecord(job.id, job.record!))
  const verify = h('button', { type: 'button', 'data-key': 'verify' }, 'Verify')
  verify.addEventListener('click', async () => {
    out.className = 'record-result'
    out.textContent = 'Verifying…'
    try {
      const r = await verifyQuorumRecord(job.record!)
      out.className = 'record-result ok'
      out.textContent = `✓ valid: ${r.workers.length} agreeing signed receipts (quorum ${r.quorum}) for model ${short(r.model)}, workers ${r.workers.map(short).join(', ')}`
    } catch (err) {
      out.className = 'record-result bad'
      out.textContent = `✗ ${errorWords(err)}`
    }
  })
  const about =
    rec instanceof Error
      ? h('p', { class: 'bad' }, `✗ unreadable: ${errorWords(rec)}`)
      : h(
          'p',
          { class: 'hint' },
          `${formatBytes(job.record!.byteLength)} of dag-cbor: ${rec.members.length} signed receipt(s) with their outputs, checkable offline (npm run verify).`,
        )
  return h('div', {}, about, h('div', { class: 'actions' }, exp, verify), out)
}

function policy(job: JobRecord, rec: RecordView | Error | undefined): Node {
  const quorum = rec && !(rec instanceof Error) ? rec.quorum : job.quorum
  const rule = rec && !(rec instanceof Error) ? rec.compare : undefined
  const rows: [string, string][] = []
  const p = job.policy
  if (p) {
    rows.push(['In words', policyWords(p)])
    rows.push(['Replicas', `${p.redundancy} at first, at most ${p.maxAttempts} in all`])
    rows.push([
      'Deadline',
      `${p.deadlineMs / 1000} s for the job, ${p.replicaTimeoutMs / 1000} s per replica`,
    ])
    if (p.allowSelf) rows.push(['This tab', 'may compute one replica itself'])
  }
  if (quorum != null)
    rows.push([
      'Quorum',
      quorum === 1 ? '1: one contributor’s answer is accepted alone' : `${quorum} contributors must agree`,
    ])
  if (rule) rows.push(['Agreement', `${rule.kind}: ${ruleWords(rule)}`])
  if (!rows.length) return h('p', { class: 'hint' }, 'Not known until the job has replicas.')
  return h('dl', { class: 'pairs' }, ...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]))
}

function tensors(job: JobRecord, catalog: Catalog, rec: RecordView | Error | undefined): Node {
  const entry = catalog.byCid(job.model)
  const ok = rec && !(rec instanceof Error) ? rec : undefined
  const first = ok?.members[0]
  const outCid = first && !(first.receipt instanceof Error) ? first.receipt.body.output.toString() : ''
  const rows: Child[][] = []
  for (const t of entry?.inputs ?? []) rows.push(['input', t.name, t.dtype, dims(t.dims)])
  const outs = first?.outputs ?? entry?.outputs ?? []
  for (const t of outs) rows.push([first ? 'output' : 'output (declared)', t.name, t.dtype, dims(t.dims)])
  const cids = h(
    'p',
    { class: 'hint' },
    ...(ok ? ['Input CID ', id(ok.input.toString())] : []),
    ...(outCid ? [' · output CID ', id(outCid)] : []),
  )
  if (!rows.length) return h('p', { class: 'hint' }, 'The catalog does not describe this model’s tensors.')
  return h('div', {}, table('Tensors', ['Kind', 'Name', 'Dtype', 'Dims'], rows), cids)
}

function section(title: string, ...body: Node[]): Node {
  return h('section', {}, h('h3', {}, title), ...body)
}

/** What the drawer shows of a job: it is redrawn only when this changes. */
const jobKey = (j: JobRecord) =>
  [
    j.id,
    j.status,
    j.risk,
    j.record?.byteLength,
    ...(j.replicas ?? []).map((r) => r.status + (r.convicted ? '!' : '') + (r.error ?? '')),
  ].join()

function buildDialog() {
  const title = h('h2', { id: 'job-drawer-title' })
  const sub = h('p', { class: 'hint' })
  const close = h('button', { type: 'button', class: 'drawer-close' }, 'Close')
  const content = h('div', {})
  const dialog = h(
    'dialog',
    { class: 'drawer', id: 'job-drawer', 'aria-labelledby': 'job-drawer-title' },
    h(
      'div',
      { class: 'drawer-body' },
      h('div', { class: 'drawer-head' }, h('div', {}, title, sub), close),
      content,
    ),
  )
  return { dialog, title, sub, close, content }
}

/** The record's receipts by their signer, to show each replica's run time and EP. */
function receiptsByWorker(rec: RecordView | Error | undefined): Map<string, Receipt> {
  const byWorker = new Map<string, Receipt>()
  if (rec && !(rec instanceof Error))
    for (const m of rec.members)
      if (!(m.receipt instanceof Error)) byWorker.set(m.receipt.body.worker, m.receipt)
  return byWorker
}

/** The receipts section and the quorum record panel, or why a job has none. */
function recordParts(j: JobRecord, rec: RecordView | Error | undefined, self: string) {
  return {
    receipts:
      rec && !(rec instanceof Error)
        ? receipts(rec, self)
        : h('p', { class: 'hint' }, 'None kept: receipts are kept with the quorum record of a verified job.'),
    panel: rec ? recordPanel(j, rec) : h('p', { class: 'hint' }, 'Only a verified job has a quorum record.'),
  }
}

/** `self`: this tab's peer id, to tell its own replicas apart. */
export function createJobDrawer(host: HTMLElement, catalog: Catalog, self: string): JobDrawer {
  const { dialog, title, sub, close, content } = buildDialog()
  host.append(dialog)
  let job: JobRecord | undefined
  let shown = '' // what the drawer shows of `job`, to redraw only on change
  let returnTo: () => HTMLElement | null = () => null
  // What the record gives (receipts checked, the record panel and its Verify result) is kept across
  // redraws of the same job: a replica ending after the verdict redraws the rest.
  let fromRecord: { key: string; receipts: Node; panel: Node } | undefined

  const render = (j: JobRecord) => {
    const focusKey = (document.activeElement as HTMLElement | null)?.dataset?.key
    shown = jobKey(j)
    title.textContent = `${modelName(j, catalog)} job`
    sub.replaceChildren('Job ', h('code', {}, j.id))
    const rec = j.record ? readRecord(j.record) : undefined
    const byWorker = receiptsByWorker(rec)
    const recKey = `${j.id} ${j.record?.byteLength}`
    if (fromRecord?.key !== recKey) fromRecord = { key: recKey, ...recordParts(j, rec, self) }
    content.replaceChildren(
      summary(j, catalog),
      section('Replicas', replicas(j, byWorker, self)),
      section('Receipts', fromRecord.receipts),
      section('Quorum record', fromRecord.panel),
      section('Policy', policy(j, rec)),
      section('Inputs and outputs', tensors(j, catalog, rec)),
    )
    if (focusKey) content.querySelector<HTMLElement>(`[data-key="${CSS.escape(focusKey)}"]`)?.focus()
  }

  close.addEventListener('click', () => dialog.close())
  // A click on the backdrop lands on the dialog itself (its body fills the rest).
  dialog.addEventListener('click', (e) => {
    if (e.target === dialog) dialog.close()
  })
  dialog.addEventListener('close', () => {
    job = undefined
    returnTo()?.focus()
  })
  // Another view (back button, link): the drawer belongs to this one.
  window.addEventListener('hashchange', () => dialog.open && dialog.close())

  return {
    open(j, back) {
      job = j
      returnTo = back
      render(j)
      if (!dialog.open) dialog.showModal()
      close.focus()
    },
    update(jobs) {
      const next = job && jobs.find((j) => j.id === job!.id)
      if (!next || jobKey(next) === shown) return
      job = next
      render(next)
    },
  }
}
