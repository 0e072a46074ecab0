/** Contributor panel: settings, pause/resume, what runs now, totals and the credit log. Text only. */
import type { ComputeTabStatus, ContributorSettings, RunningJob } from '../compute/controls.ts'
import { LIMITS } from '../compute/settings.ts'
import type { Peer } from '../peer.ts'
import { formatBytes, renderTiles, short } from './render.ts'

const MiB = 2 ** 20

const FORM = `<p><span id="ctl-state" aria-live="polite"></span> <button type="button" id="ctl-pause">Pause</button></p>
  <h3>Running now</h3>
  <div class="scroll" role="region" aria-label="Running now" tabindex="0"><table id="ctl-running"><thead><tr><th scope="col">Model</th><th scope="col">Requester</th><th scope="col">Elapsed</th></tr></thead><tbody></tbody></table></div>
  <p id="ctl-idle" class="hint">Nothing is running.</p>
  <h3>Totals</h3>
  <dl id="ctl-totals" class="tiles"></dl>
  <p><button type="button" id="ctl-export">Export credit log</button></p>
  <details id="ctl-settings"><summary>Settings</summary>
  <form id="ctl-form">
    <label>Max concurrent jobs <input name="maxJobs" type="number" min="${LIMITS.maxJobs[0]}" max="${LIMITS.maxJobs[1]}" /></label>
    <label>WASM threads <select name="wasmThreads"><option value="0">automatic</option>
      <option>1</option><option>2</option><option>4</option><option>8</option></select></label>
    <label><input name="allowWebGpu" type="checkbox" /> Allow WebGPU</label>
    <label>Max model size (MiB) <input name="maxModelBytes" type="number" min="1" /></label>
    <label>Model cache quota (MiB) <input name="modelCacheBytes" type="number" min="16" /></label>
    <label>Run <select name="runWhen"><option value="always">also in the background</option>
      <option value="visible">only while this tab is visible</option></select></label>
    <label><input name="pauseOnBattery" type="checkbox" /> Pause on battery</label>
    <label><input name="backOffUnderPressure" type="checkbox" /> Back off under CPU pressure</label>
  </form></details>`

const HOLD_TEXT: Record<string, string> = {
  paused: 'paused',
  hidden: 'tab hidden (visible-only)',
  battery: 'on battery',
  standby: 'another tab computes',
}

type Controls = Peer['controls']
type Query = <T extends Element>(sel: string) => T & HTMLElement

export function mountControlsView(peer: Peer, el: HTMLElement): void {
  const c = peer.controls
  el.hidden = false
  el.innerHTML = FORM
  const q: Query = <T extends Element>(sel: string) => el.querySelector<T & HTMLElement>(sel)!
  const form = q<HTMLFormElement>('#ctl-form')
  const fill = (s: ContributorSettings) => fillForm(form, c, s)
  form.addEventListener('change', () => void c.update(readForm(form)))
  const pause = q<HTMLButtonElement>('#ctl-pause')
  pause.addEventListener('click', () => (c.paused ? c.resume() : c.pause()))
  q('#ctl-export').addEventListener('click', () => exportCredits(peer))

  const renderLive = () => drawLive(peer, q)
  fill(c.settings())
  drawState(el, q, c, pause)
  renderLive()
  c.events.addEventListener('change', () => {
    fill(c.settings())
    drawState(el, q, c, pause)
    renderLive()
  })
  for (const type of ['totals', 'job-started', 'job-done'] as const)
    c.events.addEventListener(type, renderLive)
  peer.credits.events.addEventListener('change', renderLive)
  peer.models.events.addEventListener('change', () => fill(c.settings())) // size limit and quota live there
  // elapsed times tick, and another tab's status arrives about once a second
  setInterval(() => {
    if (c.running().length || c.computeTab()) renderLive()
  }, 500)
}

const field = (form: HTMLFormElement, name: keyof ContributorSettings) =>
  form.elements.namedItem(name) as HTMLInputElement

function fillForm(form: HTMLFormElement, c: Controls, s: ContributorSettings): void {
  if (form.contains(document.activeElement)) return // do not overwrite what is being typed
  const f = (name: keyof ContributorSettings) => field(form, name)
  f('maxJobs').value = String(s.maxJobs)
  f('wasmThreads').value = String(s.wasmThreads)
  f('allowWebGpu').checked = s.allowWebGpu
  f('maxModelBytes').value = String(Math.round(s.maxModelBytes / MiB))
  f('modelCacheBytes').value = String(Math.round(s.modelCacheBytes / MiB))
  f('runWhen').value = s.runWhen
  f('pauseOnBattery').checked = s.pauseOnBattery
  f('backOffUnderPressure').checked = s.backOffUnderPressure
  const isolated = c.state().crossOriginIsolated
  f('wasmThreads').disabled = !isolated
  f('wasmThreads').title = isolated ? '' : 'single-threaded: this page is not cross-origin isolated'
}

function readForm(form: HTMLFormElement): Parameters<Controls['update']>[0] {
  const f = (name: keyof ContributorSettings) => field(form, name)
  const num = (n: keyof ContributorSettings) => Number(f(n).value)
  return {
    maxJobs: num('maxJobs'),
    wasmThreads: num('wasmThreads'),
    allowWebGpu: f('allowWebGpu').checked,
    maxModelBytes: num('maxModelBytes') * MiB,
    modelCacheBytes: num('modelCacheBytes') * MiB,
    runWhen: f('runWhen').value === 'visible' ? 'visible' : 'always',
    pauseOnBattery: f('pauseOnBattery').checked,
    backOffUnderPressure: f('backOffUnderPressure').checked,
  }
}

async function exportCredits(peer: Peer): Promise<void> {
  const bytes = await peer.credits.export()
  const url = URL.createObjectURL(new Blob([bytes as BlobPart], { type: 'application/json' }))
  Object.assign(document.createElement('a'), { href: url, download: 'peer-compute-credits.json' }).click()
  setTimeout(() => URL.revokeObjectURL(url), 1000)
}

function drawState(el: HTMLElement, q: Query, c: Controls, pause: HTMLButtonElement): void {
  const s = c.state()
  const other = c.computeTab()
  const parts = [s.active ? 'contributing' : s.contributing ? 'not taking jobs' : 'contributing is off']
  const holds = s.holds.map((h) => HOLD_TEXT[h] ?? h)
  if (s.contributing && holds.length) parts.push(holds.join(', '))
  if (other) parts.push(`compute tab: ${short(other.peer)}`)
  else if (s.leader) parts.push('this is the compute tab of this browser')
  if (!s.crossOriginIsolated) parts.push('single-threaded WASM (page not cross-origin isolated)')
  q('#ctl-state').textContent = parts.join(' · ')
  pause.textContent = c.paused ? 'Resume' : 'Pause'
  el.dataset.active = String(s.active)
  // keep the header's Contribute switch in step when another tab changed it
  const box = document.getElementById('contribute') as HTMLInputElement | null
  if (box) box.checked = s.contributing
}

/** What runs now and the totals: this tab's, or the compute tab's when another tab computes. */
function drawLive(peer: Peer, q: Query): void {
  const c = peer.controls
  const other: ComputeTabStatus | undefined = c.computeTab()
  const jobs: RunningJob[] = other ? other.running : c.running()
  const t = other ? other.totals : c.totals()
  q('#ctl-running tbody').replaceChildren(
    ...jobs.map((j) => {
      const tr = document.createElement('tr')
      const name = peer.catalog.byCid(j.model)?.name ?? short(j.model)
      for (const v of [name, short(j.requester), `${((Date.now() - j.startedAt) / 1000).toFixed(1)} s`])
        tr.insertCell().textContent = v
      return tr
    }),
  )
  q('#ctl-idle').hidden = jobs.length > 0
  const rows: [string, string][] = [
    ['Jobs served', String(t.jobs)],
    ['Compute-seconds', (t.computeMs / 1000).toFixed(2)],
    ['Bytes in / out', `${formatBytes(t.bytesIn)} / ${formatBytes(t.bytesOut)}`],
    ['Credit', String(peer.credits.total)],
  ]
  renderTiles(q('#ctl-totals'), rows)
}
