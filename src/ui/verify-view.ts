/** Verification panel: peer reputation, and drop (or pick) an exported record to check it offline. */
import type { Peer } from '../peer.ts'
import { verifyQuorumRecord } from '../trust/quorum-record.ts'
import { short } from './render.ts'

export function downloadRecord(id: string, bytes: Uint8Array): void {
  const url = URL.createObjectURL(new Blob([bytes as BlobPart], { type: 'application/cbor' }))
  const a = Object.assign(document.createElement('a'), { href: url, download: `job-${id}.quorum.cbor` })
  a.click()
  setTimeout(() => URL.revokeObjectURL(url), 1000)
}

export function mountVerifyView(peer: Peer, el: HTMLElement): void {
  el.hidden = false
  el.innerHTML = `<h2>Verification</h2>
    <p>Drop an exported quorum record here, or <label>choose a record file <input type="file" id="verify-file" accept=".cbor" /></label></p>
    <output id="verify-result" aria-live="polite"></output>
    <h3>Reputation <button type="button" id="reputation-reset">Reset</button></h3>
    <div class="scroll" role="region" aria-label="Reputation" tabindex="0"><table id="reputation"><thead><tr><th>Peer</th><th>Valid</th><th>Invalid</th><th>Timed out</th><th>Refused</th>
      <th>Streak</th><th>Score</th><th>Chosen</th></tr></thead><tbody></tbody></table></div>`
  const result = el.querySelector<HTMLOutputElement>('#verify-result')!
  const check = async (file: File) => {
    try {
      const r = await verifyQuorumRecord(new Uint8Array(await file.arrayBuffer()))
      result.className = 'ok'
      result.textContent = `✓ valid: ${r.workers.length} agreeing signed receipts (quorum ${r.quorum}) for model ${short(r.model)}, workers ${r.workers.map(short).join(', ')}`
    } catch (err) {
      result.className = 'bad'
      result.textContent = `✗ ${(err as Error).name}: ${(err as Error).message}`
    }
  }
  el.querySelector<HTMLInputElement>('#verify-file')!.addEventListener('change', (e) => {
    const f = (e.target as HTMLInputElement).files?.[0]
    if (f) void check(f)
  })
  el.addEventListener('dragover', (e) => e.preventDefault())
  el.addEventListener('drop', (e) => {
    e.preventDefault()
    const f = e.dataTransfer?.files[0]
    if (f) void check(f)
  })
  el.querySelector('#reputation-reset')!.addEventListener('click', () => void peer.reputation.reset())

  const body = el.querySelector('#reputation tbody')!
  const render = () => {
    body.replaceChildren(
      ...peer.reputation.all().map((r) => {
        const tr = document.createElement('tr')
        const cells = [
          short(r.peer),
          r.valid,
          r.invalid,
          r.timedOut,
          r.refused ?? 0,
          r.streak,
          peer.reputation.score(r.peer).toFixed(2),
        ]
        for (const c of cells) tr.insertCell().textContent = String(c)
        const chosen = tr.insertCell()
        chosen.textContent = peer.reputation.trusted(r.peer) ? 'yes' : 'no (below threshold)'
        chosen.className = peer.reputation.trusted(r.peer) ? 'ok' : 'bad'
        return tr
      }),
    )
  }
  peer.reputation.events.addEventListener('change', render)
  render()
}
