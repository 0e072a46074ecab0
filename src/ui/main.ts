/** The app: one tab = one peer. Plain DOM; all logic lives behind the Peer API. */
import { createPeer, type Peer } from '../index.ts'
import type { TestHooks } from '../jobs/adversary.ts'
import { mountControlsView } from './controls-view.ts'
import { mountHubView } from './hub-view.ts'
import { mountJobsView } from './jobs-view.ts'
import { PATH_NAMES, short } from './render.ts'
import { mountSubmitView } from './submit-view.ts'
import { mountSwarmView } from './swarm-view.ts'
import { mountTabs, type Tabs } from './tabs.ts'
import { mountTasksView } from './tasks-view.ts'
import { mountVerifyView } from './verify-view.ts'

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T

/** The views follow the URL hash, so a link or a reload lands on the same view; Contribute is the default. */
function routeViews(): Tabs {
  const views = mountTabs(
    $('views'),
    (name) => {
      if (location.hash.slice(1) !== name) history.replaceState(null, '', `#${name}`)
    },
    location.hash.slice(1),
  )
  window.addEventListener('hashchange', () => views.show(location.hash.slice(1)))
  return views
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
  routeViews()
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

  const refreshStatus = () => {
    const s = peer.status()
    $('relay-state').textContent =
      s.relay + (s.relayConnectedMs ? ` (${s.relayConnectedMs.toFixed(0)} ms)` : '')
    $('direct-count').textContent = `${s.directPeers} direct`
    const paths = Object.entries(s.paths).filter(([, n]) => n > 0)
    $('links').textContent = paths.length
      ? `(${paths.map(([p, n]) => `${n} ${PATH_NAMES[p as keyof typeof PATH_NAMES]}`).join(', ')})`
      : s.iceServers
        ? `(${s.iceServers} ICE server(s))`
        : '(no ICE servers)'
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
      ? [c.eps.join(', '), c.adapter === 'none' ? '' : c.adapter, `${c.threads} threads`]
          .filter(Boolean)
          .join(' · ')
      : 'probing…'
    const running = peer.running()
    $('serving').textContent = running.length
      ? `Serving ${running.map((j) => `${short(j.model)} for ${short(j.requester)}`).join(', ')}`
      : ''
  }
  peer.events.addEventListener('status', refreshStatus)
  peer.events.addEventListener('serving', refreshStatus)
  refreshStatus()
  const submit = mountSubmitView(peer, $('view-submit'))
  mountSwarmView(peer, $('view-swarm'))
  peer.events.addEventListener('peers', submit.refreshTargets)
  submit.refreshTargets()
  mountJobsView(peer, $('view-jobs'))
  mountVerifyView(peer, $('verify'))
  mountHubView(peer, $('hub'))
  mountTasksView(peer, $('tasks'))
  mountControlsView(peer, $('controls'))
  // uPlot loads only here, after the page is interactive (never in the widget)
  void import('./charts.ts').then((m) => m.mountContributeCharts(peer, $('contribute-charts')))
  document.body.dataset.ready = 'true'
  performance.mark('peer-compute:interactive') // the cold-start bench reads it
}

main().catch((err) => {
  $('peer-id').textContent = `failed to start: ${(err as Error).message}`
  document.body.dataset.ready = 'error'
})
