/** The app: one tab = one peer. Plain DOM; all logic lives behind the Peer API. */
import { type CompareRule, createPeer, type Peer, type VerificationPolicy } from '../index.ts'
import type { TestHooks } from '../jobs/adversary.ts'
import { parseJsonInputs, randomInputsJson } from '../tasks/raw.ts'
import { mountControlsView } from './controls-view.ts'
import { mountHubView } from './hub-view.ts'
import { PATH_NAMES, renderJobs, renderPeers, short } from './render.ts'
import { mountTasksView } from './tasks-view.ts'
import { downloadRecord, mountVerifyView } from './verify-view.ts'

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T

const RULES: Record<string, CompareRule> = {
  exact: { kind: 'exact' },
  tolerance: { kind: 'tolerance', atol: 1e-4, rtol: 1e-4 },
  argmax: { kind: 'argmax' },
  topk: { kind: 'topk', k: 5 },
}

/** The submit form's verification policy (invalid values surface as InvalidPolicyError). */
function policyFromForm(): Partial<VerificationPolicy> {
  const rule = RULES[$<HTMLSelectElement>('rule').value]
  return {
    redundancy: Number($<HTMLInputElement>('redundancy').value),
    quorum: Number($<HTMLInputElement>('quorum').value),
    adaptive: $<HTMLInputElement>('adaptive').checked,
    ...(rule ? { compare: rule } : {}),
  }
}

/** Without a secure context there is no WebCrypto or Web Locks: say so instead of failing obscurely. */
function needsSecureContext(): boolean {
  if (globalThis.isSecureContext) return false
  const warn = $('network-warning')
  warn.hidden = false
  warn.textContent =
    `This page is not a secure context (${location.origin}), so the browser withholds WebCrypto and Web Locks ` +
    'and the peer cannot start. Open it over HTTPS (`npm start -- --https` serves the LAN with a self-signed ' +
    'certificate), or from http://localhost on this machine.'
  $('peer-id').textContent = 'not started: the page needs HTTPS'
  document.body.dataset.ready = 'error'
  return true
}

async function main() {
  if (needsSecureContext()) return
  // A test driver may install hooks before the page loads (their fields are read at each job or chunk,
  // so it may change them later); only the test build reads them, and only here.
  const testHooks = __PC_TEST_HOOKS__
    ? (globalThis as { __peerComputeTestHooks?: TestHooks }).__peerComputeTestHooks
    : undefined
  const election = new URLSearchParams(location.search).get('election') !== 'off' // one compute tab per browser
  const peer = await createPeer({ ...(testHooks ? { testHooks } : {}), election })
  ;(window as unknown as { __peer: Peer }).__peer = peer // handle for tests and the devtools console
  $('peer-id').textContent = peer.id

  const contribute = $<HTMLInputElement>('contribute')
  contribute.checked = peer.contributing
  contribute.addEventListener('change', () => void peer.setContributing(contribute.checked))

  const model = $<HTMLSelectElement>('model')
  for (const e of peer.catalog.entries) model.add(new Option(`${e.name} — ${e.description}`, e.cid))
  const input = $<HTMLTextAreaElement>('input')
  const specs = () => peer.catalog.byCid(model.value)?.inputs ?? []
  const fillRandom = () => {
    input.value = randomInputsJson(specs()) // also right for multi-input, int64 and dynamic-shape models
  }
  model.addEventListener('change', fillRandom)
  $('random').addEventListener('click', fillRandom)
  fillRandom()

  $<HTMLFormElement>('submit').addEventListener('submit', async (ev) => {
    ev.preventDefault()
    const err = $('submit-error')
    err.textContent = ''
    try {
      const inputs = parseJsonInputs(input.value, specs())
      const n = Math.max(1, Math.min(1000, Number($<HTMLInputElement>('count').value) || 1))
      const target = $<HTMLSelectElement>('target').value
      await Promise.allSettled(
        Array.from({ length: n }, () =>
          peer.submit(model.value, inputs, target ? { peer: target } : { policy: policyFromForm() }),
        ),
      ).then((rs) => {
        const failed = rs.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
        if (failed.length) err.textContent = `${failed.length} failed: ${failed[0]!.reason.message}`
      })
    } catch (e) {
      err.textContent = `${(e as Error).name}: ${(e as Error).message}`
    }
  })

  const refreshStatus = () => {
    const s = peer.status()
    $('relay-state').textContent =
      s.relay + (s.relayConnectedMs ? ` (${s.relayConnectedMs.toFixed(0)} ms)` : '')
    $('direct-count').textContent = String(s.directPeers)
    const paths = Object.entries(s.paths).filter(([, n]) => n > 0)
    $('links').textContent = paths.length
      ? paths.map(([p, n]) => `${n} ${PATH_NAMES[p as keyof typeof PATH_NAMES]}`).join(', ')
      : s.iceServers
        ? `${s.iceServers} ICE server(s)`
        : 'no ICE servers'
    const warn = $('network-warning')
    warn.hidden = !s.networkWarning
    warn.textContent = s.networkWarning ?? ''
    $('storage-state').textContent = s.storage
      ? s.storage === 'persisted'
        ? 'Storage: persistent (models and credit are kept)'
        : 'Storage: best effort (the browser may evict models and the credit log)'
      : ''
    const c = peer.capabilities()
    $('engine').textContent = c.eps.length
      ? `${c.eps.join(', ')} · ${c.adapter} · ${c.threads} threads`
      : 'probing…'
    const running = peer.running()
    $('serving').textContent = running.length
      ? `Serving ${running.map((j) => `${short(j.model)} for ${short(j.requester)}`).join(', ')}`
      : ''
  }
  const refreshPeers = () => {
    renderPeers($('peers'), peer.peers())
    const target = $<HTMLSelectElement>('target')
    const keep = target.value
    target.replaceChildren(
      new Option('any contributor', ''),
      ...peer.peers().map((p) => new Option(short(p.id), p.id)),
    )
    target.value = keep
  }
  let jobsQueued = false
  const refreshJobs = () => {
    if (jobsQueued) return
    jobsQueued = true
    requestAnimationFrame(async () => {
      jobsQueued = false
      renderJobs($('jobs'), await peer.jobs(100), peer.catalog, (j) => downloadRecord(j.id, j.record!))
    })
  }
  peer.events.addEventListener('status', refreshStatus)
  peer.events.addEventListener('serving', refreshStatus)
  peer.events.addEventListener('peers', refreshPeers)
  peer.events.addEventListener('jobs', refreshJobs)
  refreshStatus()
  refreshPeers()
  refreshJobs()
  mountVerifyView(peer, $('verify'))
  mountHubView(peer, $('hub'))
  mountTasksView(peer, $('tasks'))
  mountControlsView(peer, $('controls'))
  document.body.dataset.ready = 'true'
}

main().catch((err) => {
  $('peer-id').textContent = `failed to start: ${(err as Error).message}`
  document.body.dataset.ready = 'error'
})
