/** Table rendering for the app. Text only (textContent), never HTML from peers. */
import type { Catalog } from '../models/catalog.ts'
import type { KnownPeer } from '../net/discovery.ts'
import type { JobRecord } from '../store/db.ts'

export const PATH_NAMES = { host: 'host', stun: 'STUN', turn: 'TURN' }

export const short = (id: string) => (id.length > 14 ? `${id.slice(0, 6)}…${id.slice(-6)}` : id)

function row(cells: (string | [string, string])[]): HTMLTableRowElement {
  const tr = document.createElement('tr')
  for (const c of cells) {
    const td = tr.insertCell()
    if (Array.isArray(c)) {
      td.textContent = c[0]
      td.className = c[1]
    } else td.textContent = c
  }
  return tr
}

export function renderPeers(table: HTMLTableElement, peers: KnownPeer[]): void {
  table.tBodies[0]!.replaceChildren(
    ...peers.map((p) => {
      const a = p.advert
      const tr = row([
        short(p.id),
        p.direct
          ? [`direct · ${p.path ? PATH_NAMES[p.path] : '…'}`, 'ok']
          : p.linkError
            ? [`no path: ${p.linkError.slice(0, 80)}`, 'bad']
            : 'relay only',
        a.contributing ? ['yes', 'ok'] : 'no',
        a.eps.join(', ') || '—',
        a.adapter,
        String(a.threads),
        `${a.slots}/${a.maxSlots}`,
        String(a.models.length),
        a.version,
      ])
      tr.dataset.peer = p.id
      if (p.path) tr.dataset.path = p.path
      return tr
    }),
  )
}

const ms = (v?: number) => (v == null ? '—' : `${v.toFixed(1)} ms`)

export function renderJobs(
  table: HTMLTableElement,
  jobs: JobRecord[],
  catalog: Catalog,
  onExport: (job: JobRecord) => void,
): void {
  table.tBodies[0]!.replaceChildren(
    ...jobs.map((j) => {
      const tr = row([
        new Date(j.submittedAt).toLocaleTimeString(),
        catalog.byCid(j.model)?.name ?? short(j.model),
        j.status === 'verified'
          ? [`verified: ${j.workers?.length ?? 1} agree · ${replicaCounts(j)}`, 'ok']
          : j.status === 'running'
            ? `running · ${replicaCounts(j)}`
            : [`${j.status}: ${j.reason ?? j.error?.message ?? ''} · ${replicaCounts(j)}`, 'bad'],
        j.worker ? short(j.worker) : '—',
        j.ep ?? '—',
        ms(j.roundTripMs),
        ms(j.runMs),
        j.verified ? ['signed ✓', 'ok'] : '—',
      ])
      tr.dataset.status = j.status
      tr.dataset.job = j.id
      const cell = tr.insertCell()
      if (j.record) {
        const b = Object.assign(document.createElement('button'), { type: 'button', textContent: 'Export' })
        b.addEventListener('click', () => onExport(j))
        cell.append(b)
      }
      return tr
    }),
  )
}

/**
 * Dispatches, refusals, disagreements and busy retries, each apart: a busy retry is not a replica,
 * and a refusal is not a disagreement.
 */
export function replicaCounts(j: JobRecord): string {
  const reps = j.replicas ?? []
  const n = (f: (s: string) => boolean) => reps.filter((r) => f(r.status)).length
  const sent = n((s) => s !== 'lost' && s !== 'refused')
  const ok = n((s) => s === 'ok')
  const parts = [`${sent} sent`]
  const refused = n((s) => s === 'refused')
  if (refused) parts.push(`${refused} refused`)
  if (j.status === 'verified' && ok > (j.workers?.length ?? 0)) {
    parts.push(`${ok - (j.workers?.length ?? 0)} disagreed`)
  }
  const failed = n((s) => s === 'failed' || s === 'timedOut' || s === 'forged')
  if (failed) parts.push(`${failed} failed`)
  const busy = j.busy ?? 0
  if (busy) parts.push(`${busy} busy retries`)
  return parts.join(' · ')
}
