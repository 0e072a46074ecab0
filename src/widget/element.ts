/**
 * `<peer-compute>`: the embeddable peer. Attributes: `relay` (multiaddrs, space-separated), `mode`
 * (contribute | submit | status), `theme` (light | dark | auto). API: submit(), pause(), resume(),
 * exportCredits(), revokeConsent(). Events: job-started, job-done, credit-changed, consent-changed, ready.
 * In contribute mode nothing starts (no network, no worker) before the visitor's consent click.
 */
import type { RunningJob } from '../compute/controls.ts'
import type { JobOutcome, SubmitOptions } from '../jobs/requester.ts'
import { parseIceServers } from '../net/config.ts'
import { createPeer, type Peer } from '../peer.ts'
import { InvalidOptionError, StorageBlockedError } from '../shared/errors.ts'
import type { NamedTensors } from '../shared/tensor.ts'
import { forgetConsent, grantConsent, readConsent } from './consent.ts'
import { createView, type Mode, type ViewState } from './view.ts'

let siteBase = new URL('.', location.href)
/** Where the peer-compute site lives (catalog, models, relay config): the widget module's own URL. */
export function setWidgetBase(url: URL): void {
  siteBase = url
}

const MODES: readonly Mode[] = ['contribute', 'submit', 'status']

export class PeerComputeElement extends HTMLElement {
  static observedAttributes = ['mode', 'relay', 'theme']
  #peer: Peer | undefined
  #starting: Promise<Peer> | undefined
  #render: (s: ViewState) => void
  #status = 'not started'
  #pausedEarly = false
  #detach = () => {}

  constructor() {
    super()
    this.#render = createView(this.attachShadow({ mode: 'open' }), (a) => void this.#action(a))
  }

  get mode(): Mode {
    const m = this.getAttribute('mode') as Mode
    return MODES.includes(m) ? m : 'contribute'
  }
  get consented(): boolean {
    return readConsent() != null
  }
  get peerId(): string | undefined {
    return this.#peer?.id
  }
  get credit(): number {
    return this.#peer?.credits.total ?? 0
  }
  /** Contributors this peer can reach directly now. */
  get contributors(): number {
    return this.#peer?.peers().filter((p) => p.direct && p.advert.contributing).length ?? 0
  }
  get paused(): boolean {
    return this.#peer?.controls.paused ?? this.#pausedEarly
  }

  connectedCallback(): void {
    if (this.mode !== 'contribute' || this.consented) void this.#start().catch(() => {})
    else this.#status = 'Waiting for your consent'
    this.#update()
  }
  disconnectedCallback(): void {
    queueMicrotask(() => {
      if (!this.isConnected) void this.#stop()
    })
  }
  attributeChangedCallback(): void {
    this.#update()
  }

  /** Runs a job on the swarm. Never computes locally unless the visitor consented to contribute. */
  async submit(model: string, inputs: NamedTensors, opts: SubmitOptions = {}): Promise<JobOutcome> {
    const peer = await this.#start()
    const allowSelf = this.consented && (opts.policy?.allowSelf ?? false)
    return peer.submit(model, inputs, { ...opts, policy: { ...opts.policy, allowSelf } })
  }
  /** Stops taking jobs at once; running jobs are handed back to their requesters. */
  pause(): void {
    this.#pausedEarly = true
    this.#peer?.controls.pause()
    this.#update()
  }
  resume(): void {
    this.#pausedEarly = false
    this.#peer?.controls.resume()
    this.#update()
  }
  async exportCredits(): Promise<Uint8Array> {
    return (await this.#start()).credits.export()
  }
  /** Forgets consent for this site and stops contributing. */
  async revokeConsent(): Promise<void> {
    forgetConsent()
    await this.#peer?.setContributing(false)
    this.#emit('consent-changed', { consented: false })
    if (this.mode === 'contribute') await this.#stop()
    this.#status = 'Consent withdrawn: not contributing'
    this.#update()
  }

  async #action(action: string): Promise<void> {
    if (action === 'consent') {
      grantConsent()
      this.#emit('consent-changed', { consented: true })
      const peer = await this.#start()
      await peer.setContributing(true)
    } else if (action === 'toggle') this.paused ? this.resume() : this.pause()
    else if (action === 'revoke') await this.revokeConsent()
    else if (action === 'export') {
      const url = URL.createObjectURL(
        new Blob([(await this.exportCredits()) as BlobPart], { type: 'application/json' }),
      )
      Object.assign(document.createElement('a'), { href: url, download: 'peer-compute-credits.json' }).click()
      setTimeout(() => URL.revokeObjectURL(url), 1000)
    }
    this.#update()
  }

  #start(): Promise<Peer> {
    this.#starting ??= this.#create().catch((err: Error) => {
      this.#starting = undefined
      this.#status = `Could not start: ${err.message}`
      this.#update()
      throw err
    })
    return this.#starting
  }

  async #create(): Promise<Peer> {
    if (!storageUsable())
      throw new StorageBlockedError(
        'this browser blocks storage in embedded frames (third-party storage), so the peer cannot keep its key or credit here: open peer-compute directly, or ask the site to embed the <peer-compute> element',
      )
    this.#status = 'Connecting…'
    this.#update()
    const attr = this.getAttribute('relay')?.split(/\s+/).filter(Boolean) ?? []
    const ice = this.getAttribute('ice-servers')
    const peer = await createPeer({
      // The widget's own site serves peer-compute.json: relays and ICE servers (minted TURN credentials).
      configUrl: siteBase.href,
      ...(attr.length ? { relays: attr } : {}),
      ...(ice ? { iceServers: parseIceServers(parseJson(ice, 'ice-servers')) } : {}),
      catalogUrl: new URL('models/catalog.json', siteBase).href,
      contribute: this.mode === 'contribute' && this.consented,
      election: true,
      lazyEngine: true,
    })
    this.#peer = peer
    if (this.#pausedEarly) peer.controls.pause()
    this.#listen(peer)
    this.#emit('ready', { peerId: peer.id })
    this.#update()
    return peer
  }

  #listen(peer: Peer): void {
    const c = peer.controls
    const credit = () => this.#emit('credit-changed', { credit: peer.credits.total })
    const update = () => this.#update()
    c.events.addEventListener('job-started', (e) => this.#emit('job-started', jobDetail(peer, e.detail)))
    c.events.addEventListener('job-done', ({ detail: d }) =>
      this.#emit('job-done', { ...jobDetail(peer, d), ok: d.ok, code: d.code, runMs: d.runMs }),
    )
    peer.credits.events.addEventListener('change', credit)
    for (const t of ['change', 'totals', 'job-started', 'job-done'] as const)
      c.events.addEventListener(t, update)
    peer.events.addEventListener('peers', update)
    peer.events.addEventListener('status', update)
    peer.credits.events.addEventListener('change', update)
    const tick = setInterval(update, 1000) // the compute tab's status from other tabs
    this.#detach = () => clearInterval(tick)
  }

  async #stop(): Promise<void> {
    const peer = this.#peer
    this.#peer = undefined
    this.#starting = undefined
    this.#detach()
    await peer?.stop()
    this.#update()
  }

  #emit(type: string, detail: unknown): void {
    this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true }))
  }

  #update(): void {
    const peer = this.#peer
    const s = peer?.controls.state()
    const other = peer?.controls.computeTab()
    if (peer && s) this.#status = describe(this.mode, s, other?.peer)
    this.#render({
      mode: this.mode,
      consented: this.consented,
      started: peer != null,
      status: this.#status,
      isolated: globalThis.crossOriginIsolated === true,
      paused: this.paused,
      running: other ? other.running.length : (peer?.controls.running().length ?? 0),
      served: other ? other.totals.jobs : (peer?.controls.totals().jobs ?? 0),
      credit: this.credit,
      peers: peer?.peers().length ?? 0,
    })
  }
}

/** Browsers that block third-party storage deny it to cross-site iframes altogether. */
function storageUsable(): boolean {
  try {
    return typeof indexedDB !== 'undefined' && localStorage !== null
  } catch {
    return false
  }
}

function jobDetail(peer: Peer, j: RunningJob) {
  return { job: j.job, model: j.model, modelName: peer.catalog.byCid(j.model)?.name, requester: j.requester }
}

function describe(mode: Mode, s: ReturnType<Peer['controls']['state']>, otherTab?: string): string {
  if (mode !== 'contribute') return mode === 'submit' ? 'Ready to submit jobs' : 'Watching the swarm'
  if (!s.contributing) return 'Not contributing'
  if (otherTab) return 'Another tab of this browser is contributing'
  if (s.paused) return 'Paused'
  if (!s.active) return `Not taking jobs (${s.holds.join(', ')})`
  return 'Contributing compute'
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    throw new InvalidOptionError(`the ${what} attribute must be JSON (an RTCIceServer array)`)
  }
}
