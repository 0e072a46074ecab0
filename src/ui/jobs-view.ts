/** Jobs view: the jobs this tab submitted, newest first, with their replica counts and records. */
import type { Peer } from '../peer.ts'
import { renderJobs } from './render.ts'
import { downloadRecord } from './verify-view.ts'

export function mountJobsView(peer: Peer, el: HTMLElement): void {
  el.innerHTML = `<h2>Jobs</h2>
    <div class="scroll" role="region" aria-label="Jobs" tabindex="0"><table id="jobs">
      <caption>Jobs this tab submitted, newest first</caption>
      <thead><tr><th scope="col">Submitted</th><th scope="col">Model</th><th scope="col">Status</th><th scope="col">Computed by</th><th scope="col">EP</th><th scope="col">Round trip</th><th scope="col">Run</th><th scope="col">Receipt</th><th scope="col">Quorum record</th></tr></thead>
      <tbody></tbody>
    </table></div>`
  const table = el.querySelector<HTMLTableElement>('#jobs')!
  let queued = false
  const refresh = () => {
    if (queued) return
    queued = true
    requestAnimationFrame(async () => {
      queued = false
      renderJobs(table, await peer.jobs(100), peer.catalog, (j) => downloadRecord(j.id, j.record!))
    })
  }
  peer.events.addEventListener('jobs', refresh)
  refresh()
}
