/** Task views (OCR, voice activity) in one tabbed panel; also exposes `window.__tasks`. Raw tensors are the Submit view. */
import type { Peer } from '../peer.ts'
import { createTasks, type Tasks } from '../tasks/peer-tasks.ts'
import { mountTabs } from './tabs.ts'
import { mountOcrView } from './tasks-ocr.ts'
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
    <div class="task-tabs" role="tablist" aria-label="Task">
      <button type="button" role="tab" id="task-tab-ocr" aria-controls="task-ocr" data-view="ocr">Text in images (OCR)</button>
      <button type="button" role="tab" id="task-tab-vad" aria-controls="task-vad" data-view="vad">Voice activity</button>
    </div>
    <div role="tabpanel" id="task-ocr" aria-labelledby="task-tab-ocr"></div>
    <div role="tabpanel" id="task-vad" aria-labelledby="task-tab-vad" hidden></div>`
  mountOcrView(tasks, el.querySelector('#task-ocr')!)
  mountVadView(tasks, el.querySelector('#task-vad')!)
  mountTabs(el.querySelector('[role="tablist"]')!)
  return tasks
}
