/** Model hub panel: the catalog, import by URL or file (drag and drop), the cache with its quota, and delete. */
import type { ModelInfo, ModelProgress, TransferRecord } from '../models/hub.ts'
import type { Peer } from '../peer.ts'
import { short } from './render.ts'

const MiB = 1024 * 1024
const mib = (n: number) => `${(n / MiB).toFixed(n < 10 * MiB ? 2 : 1)} MiB`

function cells(tr: HTMLTableRowElement, values: (string | Node)[]): void {
  for (const v of values) tr.insertCell().append(v)
}

function button(label: string, onClick: () => void): HTMLButtonElement {
  const b = Object.assign(document.createElement('button'), { type: 'button', textContent: label })
  b.addEventListener('click', onClick)
  return b
}

type Hub = Peer['models']
/** Runs an import, reporting the stored model or the error by name. */
type Run = (what: string, task: () => Promise<{ name: string; cid: string; size: number }>) => Promise<void>
type Report = (ok: boolean, text: string) => void
type Query = <T extends HTMLElement>(sel: string) => T

const FORM = `<h2>Models</h2>
    <p id="hub-usage"></p>
    <form id="hub-limits">
      <label>Storage quota (MiB) <input id="hub-quota" type="number" min="1" step="1" /></label>
      <label>Largest model (MiB) <input id="hub-max" type="number" min="1" step="1" /></label>
      <button type="submit">Save limits</button>
    </form>
    <h3>Import</h3>
    <form id="hub-import-url">
      <label class="wide">ONNX model URL <input id="hub-url" type="url" placeholder="https://…/model.onnx" required /></label>
      <button type="submit">Import from URL</button>
      <label>or a file <input id="hub-file" type="file" accept=".onnx" /></label>
    </form>
    <p id="hub-drop" class="drop">…or drop an .onnx file here</p>
    <p><progress id="hub-progress" max="1" value="0" hidden></progress> <span id="hub-progress-text"></span></p>
    <output id="hub-result" aria-live="polite"></output>
    <h3>Catalog</h3>
    <div class="scroll" role="region" aria-label="Catalog" tabindex="0"><table id="hub-catalog"><thead><tr><th>Name</th><th>Task</th><th>Size</th><th>License</th><th>CID</th><th></th></tr></thead><tbody></tbody></table></div>
    <h3>Cached</h3>
    <div class="scroll" role="region" aria-label="Cached models" tabindex="0"><table id="hub-cached"><thead><tr><th>Name</th><th>CID</th><th>Size</th><th>Last used</th><th>In use</th><th></th></tr></thead><tbody></tbody></table></div>
    <h3>Peer transfers</h3>
    <div class="scroll" role="region" aria-label="Peer transfers" tabindex="0"><table id="hub-transfers"><thead><tr><th>When</th><th>CID</th><th>Size</th><th>MiB/s</th><th>Resumed</th><th>Corrupt chunks</th><th>From</th></tr></thead><tbody></tbody></table></div>`

const failed = (err: unknown) => `✗ ${(err as Error).name}: ${(err as Error).message}`

export function mountHubView(peer: Peer, el: HTMLElement): void {
  const hub = peer.models
  el.hidden = false
  el.innerHTML = FORM
  const $: Query = <T extends HTMLElement>(sel: string) => el.querySelector<T>(sel)!
  const result = $<HTMLOutputElement>('#hub-result')
  const bar = $<HTMLProgressElement>('#hub-progress')
  const barText = $('#hub-progress-text')

  const report: Report = (ok, text) => {
    result.className = ok ? 'ok' : 'bad'
    result.textContent = text
  }
  const run: Run = async (what, task) => {
    report(true, `importing ${what}…`)
    try {
      const m = await task()
      report(true, `✓ ${m.name || short(m.cid)}: ${mib(m.size)}, ${m.cid}`)
    } catch (err) {
      report(false, failed(err))
    } finally {
      bar.hidden = true
      barText.textContent = ''
    }
  }

  hub.events.addEventListener('progress', (e) => showProgress(bar, barText, e.detail))
  wireImports(el, $, hub, run)
  wireLimits($, hub, report)

  let queued = false
  const render = () => {
    if (queued) return
    queued = true
    requestAnimationFrame(async () => {
      queued = false
      await draw(peer, $, run, report)
    })
  }
  hub.events.addEventListener('change', render)
  render()
}

function showProgress(bar: HTMLProgressElement, text: HTMLElement, p: ModelProgress): void {
  bar.hidden = p.total !== undefined && p.loaded >= p.total // a finished transfer clears the bar
  bar.value = p.total ? p.loaded / p.total : 0
  if (!p.total) bar.removeAttribute('value') // indeterminate
  const from = p.source === 'peer' ? 'from peers' : 'download'
  text.textContent = `${p.name || short(p.cid ?? '')} ${from}: ${mib(p.loaded)}${p.total ? ` of ${mib(p.total)}` : ''}`
}

/** Import by URL, by file picker, or by a file dropped anywhere on the panel. */
function wireImports(el: HTMLElement, $: Query, hub: Hub, run: Run): void {
  $<HTMLFormElement>('#hub-import-url').addEventListener('submit', (ev) => {
    ev.preventDefault()
    const url = $<HTMLInputElement>('#hub-url').value.trim()
    void run(url, () => hub.importUrl(url))
  })
  const importFile = (f: File) => void run(f.name, () => hub.importFile(f))
  $<HTMLInputElement>('#hub-file').addEventListener('change', (e) => {
    const f = (e.target as HTMLInputElement).files?.[0]
    if (f) importFile(f)
  })
  el.addEventListener('dragover', (e) => e.preventDefault())
  el.addEventListener('drop', (e) => {
    e.preventDefault()
    const f = e.dataTransfer?.files[0]
    if (f) importFile(f)
  })
}

function wireLimits($: Query, hub: Hub, report: Report): void {
  const quota = $<HTMLInputElement>('#hub-quota')
  const max = $<HTMLInputElement>('#hub-max')
  $<HTMLFormElement>('#hub-limits').addEventListener('submit', async (ev) => {
    ev.preventDefault()
    try {
      await hub.setQuota(Math.round(Number(quota.value) * MiB))
      await hub.setMaxModelBytes(Math.round(Number(max.value) * MiB))
      report(true, 'limits saved')
    } catch (err) {
      report(false, failed(err))
    }
  })
}

/** Redraws the usage, the limits (unless being typed) and the three tables. */
async function draw(peer: Peer, $: Query, run: Run, report: Report): Promise<void> {
  const hub = peer.models
  const quota = $<HTMLInputElement>('#hub-quota')
  const max = $<HTMLInputElement>('#hub-max')
  const models = await hub.list()
  const have = new Set(models.map((m) => m.cid))
  const used = models.reduce((n, m) => n + m.size, 0)
  $('#hub-usage').textContent = `${models.length} cached, ${mib(used)} of ${mib(hub.quotaBytes)} quota`
  if (document.activeElement !== quota) quota.value = String(Math.round(hub.quotaBytes / MiB))
  if (document.activeElement !== max) max.value = String(Math.round(hub.maxModelBytes / MiB))

  $('#hub-catalog tbody').replaceChildren(
    ...peer.catalog.entries.map((e) => {
      const tr = document.createElement('tr')
      const action = have.has(e.cid)
        ? 'cached'
        : button('Import', () => void run(e.name, () => hub.importCatalog(e.name)))
      cells(tr, [e.name, e.task, mib(e.size), e.license, short(e.cid), action])
      return tr
    }),
  )
  $('#hub-cached tbody').replaceChildren(...models.map((m) => cachedRow(peer, m, report)))
  $('#hub-transfers tbody').replaceChildren(...hub.transfers().map(transferRow))
}

function cachedRow(peer: Peer, m: ModelInfo, report: Report): HTMLTableRowElement {
  const tr = document.createElement('tr')
  tr.dataset.cid = m.cid
  const del = button('Delete', async () => {
    await peer.models.delete(m.cid)
    report(true, `deleted ${m.name || short(m.cid)}`)
  })
  const name = m.name || peer.catalog.byCid(m.cid)?.name || '—'
  cells(tr, [
    name,
    short(m.cid),
    mib(m.size),
    new Date(m.lastUsed).toLocaleString(),
    m.inUse ? 'yes' : 'no',
    del,
  ])
  return tr
}

function transferRow(t: TransferRecord): HTMLTableRowElement {
  const tr = document.createElement('tr')
  const rate = t.ms > 0 ? (t.size - t.resumed) / MiB / (t.ms / 1000) : 0
  const from = Object.keys(t.providers).map(short).join(', ')
  cells(tr, [
    new Date(t.at).toLocaleTimeString(),
    short(t.cid),
    mib(t.size),
    rate.toFixed(1),
    mib(t.resumed),
    String(t.corrupt),
    from,
  ])
  return tr
}
