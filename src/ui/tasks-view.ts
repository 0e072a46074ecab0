/** Task views (OCR, voice activity, raw tensors) in one tabbed panel; also exposes `window.__tasks`. */
import type { Peer } from '../peer.ts'
import { createTasks, type Tasks } from '../tasks/peer-tasks.ts'
import { mountOcrView } from './tasks-ocr.ts'
import { mountRawView } from './tasks-raw.ts'
import { mountVadView } from './tasks-vad.ts'
import './tasks.css'

declare global {
  interface Window {
    /** The task pipelines bound to this tab's peer, for tests and the devtools console. */
    __tasks?: Tasks
  }
}

export function mountTasksView(peer: Peer, el: HTMLElement): Tasks {
  const tasks = createTasks(peer)
  window.__tasks = tasks
  el.hidden = false
  el.innerHTML = `<h2>Tasks</h2>
    <nav class="task-tabs" role="tablist">
      <button type="button" role="tab" data-view="ocr">Text in images (OCR)</button>
      <button type="button" role="tab" data-view="vad">Voice activity</button>
      <button type="button" role="tab" data-view="raw">Raw tensors</button>
    </nav>
    <div data-panel="ocr"></div><div data-panel="vad" hidden></div><div data-panel="raw" hidden></div>`
  const panel = (name: string) => el.querySelector<HTMLElement>(`[data-panel="${name}"]`)!
  mountOcrView(tasks, panel('ocr'))
  mountVadView(tasks, panel('vad'))
  mountRawView(peer, panel('raw'))
  const tabs = [...el.querySelectorAll<HTMLButtonElement>('[data-view]')]
  const show = (name: string) => {
    for (const t of tabs) t.setAttribute('aria-selected', String(t.dataset.view === name))
    for (const p of el.querySelectorAll<HTMLElement>('[data-panel]')) p.hidden = p.dataset.panel !== name
  }
  for (const t of tabs) t.addEventListener('click', () => show(t.dataset.view!))
  show('ocr')
  return tasks
}
