/**
 * Jobs view: the jobs this tab submitted, newest first, each count apart (sent, refused, disagreed,
 * failed, busy retries); a job's model name opens its detail drawer (jobs-drawer.ts).
 */

import type { Catalog } from '../models/catalog.ts'
import type { Peer } from '../peer.ts'
import type { JobRecord } from '../store/db.ts'
import { riskWords } from '../trust/risk.ts'
import { countReplicas, modelName, ms, statusWords, when } from './job-words.ts'
import { createJobDrawer } from './jobs-drawer.ts'
import { short } from './render.ts'
import './jobs.css'

const LIMIT = 100

const COLUMNS = [
  'Model',
  'Submitted',
  'Status',
  'Sent',
  'Refused',
  'Disagreed',
  'Failed',
  'Busy retries',
  'Computed by',
  'EP',
  'Round trip',
  'Run',
  'Risk',
]

function cell(tr: HTMLTableRowElement, text: string, cls = '', title = ''): void {
  const td = tr.insertCell()
  td.textContent = text
  if (cls) td.className = cls
  if (title) td.title = title
}

/** Rows of `jobs`; each model cell is a row header holding the button that opens the job's details. */
export function renderJobs(
  table: HTMLTableElement,
  jobs: JobRecord[],
  catalog: Catalog,
  onOpen: (job: JobRecord) => void,
): void {
  table.tBodies[0]!.replaceChildren(
    ...jobs.map((j) => {
      const tr = document.createElement('tr')
      tr.dataset.status = j.status
      tr.dataset.job = j.id
      const name = modelName(j, catalog)
      const th = Object.assign(document.createElement('th'), { scope: 'row' })
      const open = Object.assign(document.createElement('button'), {
        type: 'button',
        className: 'job-open',
        textContent: name,
      })
      open.dataset.job = j.id
      open.setAttribute('aria-haspopup', 'dialog')
      open.setAttribute('aria-label', `${name}, ${when(j.submittedAt)}: details`)
      open.addEventListener('click', () => onOpen(j))
      th.append(open)
      tr.append(th)
      cell(tr, when(j.submittedAt))
      const s = statusWords(j)
      cell(tr, s.text.length > 80 ? `${s.text.slice(0, 79)}…` : s.text, `status ${s.cls}`, s.text)
      const c = countReplicas(j)
      for (const v of [c.sent, c.refused, c.disagreed, c.failed, c.busy])
        cell(tr, String(v), v ? 'num' : 'num zero')
      const others = (j.workers?.length ?? 0) - 1
      cell(
        tr,
        j.worker ? `${short(j.worker)}${others > 0 ? ` +${others}` : ''}` : '—',
        '',
        (j.workers ?? []).join('\n'),
      )
      cell(tr, j.ep ?? '—')
      cell(tr, ms(j.roundTripMs), 'num')
      cell(tr, ms(j.runMs), 'num')
      cell(
        tr,
        j.risk === undefined ? '—' : riskWords(j.risk),
        'num',
        'the chance this verified result is wrong',
      )
      return tr
    }),
  )
}

export function mountJobsView(peer: Peer, el: HTMLElement): void {
  el.innerHTML = `<h2>Jobs</h2>
    <p class="hint">Every job this tab submitted, newest first (up to ${LIMIT}). Open one by its model name
      for its replicas, signed receipts and quorum record.</p>
    <p class="hint" id="jobs-empty" hidden>No jobs yet: submit one under <a href="#submit">Submit</a>.</p>
    <div class="scroll" role="region" aria-label="Jobs" tabindex="0"><table id="jobs" class="jobs">
      <caption>Jobs this tab submitted, newest first</caption>
      <thead><tr>${COLUMNS.map((c) => `<th scope="col">${c}</th>`).join('')}</tr></thead>
      <tbody></tbody>
    </table></div>`
  const table = el.querySelector<HTMLTableElement>('#jobs')!
  const empty = el.querySelector<HTMLElement>('#jobs-empty')!
  // The row's button, looked up when the drawer closes: the table may have been redrawn meanwhile.
  const button = (id: string) => table.querySelector<HTMLElement>(`button[data-job="${CSS.escape(id)}"]`)
  const drawer = createJobDrawer(el, peer.catalog, peer.id)
  const open = (j: JobRecord) => drawer.open(j, () => button(j.id))
  let queued = false
  const refresh = () => {
    if (queued) return
    queued = true
    requestAnimationFrame(async () => {
      queued = false
      const jobs = await peer.jobs(LIMIT)
      // Keep keyboard focus on the same job's button across a redraw.
      const focused = table.contains(document.activeElement) ? (document.activeElement as HTMLElement) : null
      renderJobs(table, jobs, peer.catalog, open)
      if (focused?.dataset.job) button(focused.dataset.job)?.focus()
      empty.hidden = jobs.length > 0
      drawer.update(jobs)
    })
  }
  peer.events.addEventListener('jobs', refresh)
  refresh()
}
