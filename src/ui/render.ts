/** Table rendering for the app. Text only (textContent), never HTML from peers. */
import type { Catalog } from '../models/catalog.ts'
import type { KnownPeer } from '../net/discovery.ts'
import type { JobRecord } from '../store/db.ts'
import type { Reputation } from '../trust/reputation.ts'

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

const MiB = 2 ** 20

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`
  if (n < MiB) return `${(n / 1024).toFixed(1)} KiB`
  return `${(n / MiB).toFixed(1)} MiB`
}

/** What this tab's peers are, in words: reliability and how many results it has seen from them. */
function reputationText(rep: Reputation | undefined, id: string): string | [string, string] {
  if (!rep) return '—'
  const r = rep.get(id)
  const seen = r.valid + r.invalid + r.timedOut
  if (!seen) return 'new'
  const words = `${Math.round(rep.score(id) * 100)}% · ${r.valid} valid${r.invalid ? `, ${r.invalid} invalid` : ''}`
  return rep.trusted(id) ? words : [`untrusted: ${words}`, 'bad']
}

export function renderPeers(table: HTMLTableElement, peers: KnownPeer[], rep?: Reputation): void {
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
        reputationText(rep, p.id),
        String(a.models.length),
        a.version,
      ])
      tr.dataset.peer = p.id
      if (p.path) tr.dataset.path = p.path
      return tr
    }),
  )
}

/** The swarm at a glance: peers, links by path, contributors and their free slots, EPs. */
export function renderSwarmTotals(dl: HTMLElement, peers: KnownPeer[]): void {
  const contributing = peers.filter((p) => p.advert.contributing)
  const slots = contributing.reduce((n, p) => n + p.advert.slots, 0)
  const max = contributing.reduce((n, p) => n + p.advert.maxSlots, 0)
  const eps = new Map<string, number>()
  for (const p of contributing) for (const ep of p.advert.eps) eps.set(ep, (eps.get(ep) ?? 0) + 1)
  const direct = peers.filter((p) => p.direct)
  const byPath = (['host', 'stun', 'turn'] as const)
    .map((k) => [k, direct.filter((p) => p.path === k).length] as const)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${n} ${PATH_NAMES[k]}`)
  const tiles: [string, string][] = [
    ['Peers', String(peers.length)],
    [
      'Direct links',
      direct.length ? `${direct.length}${byPath.length ? ` (${byPath.join(', ')})` : ''}` : '0',
    ],
    ['Contributing', String(contributing.length)],
    ['Free slots', `${slots} of ${max}`],
    ['Engines', [...eps].map(([ep, n]) => `${n} ${ep}`).join(', ') || '—'],
  ]
  renderTiles(dl, tiles)
}

/** Name–value tiles in a `<dl class="tiles">`, one `<div>` per pair (valid dl grouping). */
export function renderTiles(dl: HTMLElement, tiles: [string, string][]): void {
  dl.replaceChildren(
    ...tiles.map(([k, v]) => {
      const div = document.createElement('div')
      div.append(
        Object.assign(document.createElement('dt'), { textContent: k }),
        Object.assign(document.createElement('dd'), { textContent: v }),
      )
      return div
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
