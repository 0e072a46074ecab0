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

export function mountControlsView(peer: Peer, el: HTMLElement): void {
  const c = peer.controls
  el.hidden = false
  el.innerHTML = FORM
  const q = <T extends Element>(sel: string) => el.querySelector<T & HTMLElement>(sel)!
  const form = q<HTMLFormElement>('#ctl-form')
  const field = (name: keyof ContributorSettings) => form.elements.namedItem(name) as HTMLInputElement

  const fill = (s: ContributorSettings) => {
    if (form.contains(document.activeElement)) return // do not overwrite what is being typed
    field('maxJobs').value = String(s.maxJobs)
    field('wasmThreads').value = String(s.wasmThreads)
    field('allowWebGpu').checked = s.allowWebGpu
    field('maxModelBytes').value = String(Math.round(s.maxModelBytes / MiB))
    field('modelCacheBytes').value = String(Math.round(s.modelCacheBytes / MiB))
    field('runWhen').value = s.runWhen
    field('pauseOnBattery').checked = s.pauseOnBattery
    field('backOffUnderPressure').checked = s.backOffUnderPressure
    const isolated = c.state().crossOriginIsolated
    field('wasmThreads').disabled = !isolated
    field('wasmThreads').title = isolated ? '' : 'single-threaded: this page is not cross-origin isolated'
  }
  form.addEventListener('change', () => {
    const num = (n: keyof ContributorSettings) => Number(field(n).value)
    void c.update({
      maxJobs: num('maxJobs'),
      wasmThreads: num('wasmThreads'),
      allowWebGpu: field('allowWebGpu').checked,
      maxModelBytes: num('maxModelBytes') * MiB,
      modelCacheBytes: num('modelCacheBytes') * MiB,
      runWhen: field('runWhen').value === 'visible' ? 'visible' : 'always',
      pauseOnBattery: field('pauseOnBattery').checked,
      backOffUnderPressure: field('backOffUnderPressure').checked,
    })
  })
  const pause = q<HTMLButtonElement>('#ctl-pause')
  pause.addEventListener('click', () => (c.paused ? c.resume() : c.pause()))
  q('#ctl-export').addEventListener('click', async () => {
    const bytes = await peer.credits.export()
    const url = URL.createObjectURL(new Blob([bytes as BlobPart], { type: 'application/json' }))
    Object.assign(document.createElement('a'), { href: url, download: 'peer-compute-credits.json' }).click()
    setTimeout(() => URL.revokeObjectURL(url), 1000)
  })

  const renderState = () => {
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
  const renderLive = () => {
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
  fill(c.settings())
  renderState()
  renderLive()
  c.events.addEventListener('change', () => {
    fill(c.settings())
    renderState()
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
