/** Table rendering for the app. Text only (textContent), never HTML from peers. */
import type { KnownPeer } from '../net/discovery.ts'
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
  const seen = r.valid + r.invalid + r.timedOut + (r.refused ?? 0)
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
