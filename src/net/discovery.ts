/**
 * Discovery over gossipsub: publishes our signed advert periodically and on change, tracks
 * other peers' adverts, and keeps direct WebRTC links to the most useful of them, within a budget
 * (src/net/link-plan.ts): more, and to holders of the models we use, while we submit.
 */
import type { Logger, PrivateKey } from '@libp2p/interface'
import { WebRTC } from '@multiformats/multiaddr-matcher'
import type { Service } from '../shared/lifecycle.ts'
import { ADVERT_TOPIC } from '../shared/protocol.ts'
import type { Capabilities } from './advert.ts'
import { type AdvertIntake, advertised, createAdvertIntake, type KnownPeer } from './advert-intake.ts'
import { createLinks, type Links } from './discovery-links.ts'
import { type AdvertPublisher, createAdvertPublisher } from './discovery-publish.ts'
import { type LinkPlanOptions, linkPlanDefaults } from './link-plan.ts'
import type { BrowserNode } from './node.ts'

export { type KnownPeer, MAX_INVALID_ADVERTS } from './advert-intake.ts'
export { LINK_CONNECT_MS, LINK_DISCONNECTED_MS } from './discovery-links.ts'
export { SLOT_ADVERT_GAP_MS } from './discovery-publish.ts'

export interface DiscoveryOptions {
  node: BrowserNode
  privateKey: PrivateKey
  capabilities: () => Capabilities
  log: Logger
  /** Unchanged adverts are republished this often (changes go out at once); default 15 s. */
  intervalMs?: number
  /** The lower PeerId dials first; the other side dials after this grace period. */
  dialGraceMs?: number
  /** Link budget (src/net/link-plan.ts); default 32 dialled, 8 of them kept warm with no demand. */
  links?: Partial<Omit<LinkPlanOptions, 'wanted'>>
}

export interface Discovery extends Service {
  peers(): KnownPeer[]
  get(id: string): KnownPeer | undefined
  /**
   * Publish soon (debounced 50 ms), or no sooner than `minGapMs` after the last advert: free-slot
   * changes come with every job, and each advert costs a signature here and a check at every peer.
   */
  announce(minGapMs?: number): void
  /**
   * Our capabilities may have changed: published at once if what we offer changed (switched on or
   * off, slots, models, engine), within SLOT_ADVERT_GAP_MS if only the free count did, else not at all.
   */
  capabilitiesChanged(): void
  /** We are about to use `model` (a job, a fetch): link its holders and contributors with free slots. */
  want(model: string): void
  /** Replaces the direct link to `id` now, whatever the grace period: closes it, then dials again. */
  redial(id: string, signal: AbortSignal): Promise<void>
  /**
   * Contributors are known but none can be linked: each one's last dial failed. Undefined while
   * some link is up or still being tried, or no contributor is known.
   */
  noPath(): string | undefined
  /** Fires 'change' whenever the peer set, an advert, or a connection changes. */
  events: EventTarget
  stop(): void
}

export function createDiscovery(opts: DiscoveryOptions): Discovery {
  const { node, log } = opts
  const interval = opts.intervalMs ?? 15_000
  // Dials are retried (and lapsed peers dropped) more often than adverts repeat.
  const tick = Math.min(interval, 5000)
  const self = node.peerId.toString()
  const pubsub = node.services.pubsub
  const peers = new Map<string, KnownPeer>()
  const events = new EventTarget()
  const changed = () => events.dispatchEvent(new Event('change'))
  const adverts = createAdvertPublisher(opts)
  const intake = createAdvertIntake({ node, log, onCutOff: changed })
  const isBlocked = intake.isBlocked
  const links = createLinks({
    node,
    log,
    peers,
    isBlocked,
    changed,
    grace: opts.dialGraceMs ?? 3000,
    budget: { ...linkPlanDefaults(opts.links?.budget), ...opts.links },
  })

  const receiver: Receiver = { self, peers, intake, adverts, links, log }
  const onMessage = (evt: CustomEvent) => receive(receiver, evt.detail)

  const onConn = (evt: CustomEvent) => {
    const id = evt.detail.remotePeer.toString()
    if (evt.type === 'connection:open' && isBlocked(id) && WebRTC.matches(evt.detail.remoteAddr)) {
      evt.detail.abort(new Error('cut off for invalid adverts'))
      return
    }
    if (evt.type === 'connection:open') links.watch(evt.detail)
    if (peers.has(id)) links.refresh(id)
  }
  const onSelf = () => adverts.announce()
  const onSub = () => adverts.announce()

  pubsub.addEventListener('message', onMessage)
  pubsub.addEventListener('subscription-change', onSub)
  node.addEventListener('connection:open', onConn)
  node.addEventListener('connection:close', onConn)
  node.addEventListener('self:peer:update', onSelf)
  pubsub.subscribe(ADVERT_TOPIC)

  const timer = setInterval(() => {
    const now = Date.now()
    dropLapsed(peers, now - interval * 3, changed)
    links.plan()
    if (now - adverts.publishedAt() >= interval - tick / 2) void adverts.publish()
  }, tick)

  return {
    peers: () => [...peers.values()],
    get: (id) => peers.get(id),
    want: links.want,
    redial: links.redial,
    noPath: links.noPath,
    announce: adverts.announce,
    capabilitiesChanged: adverts.capabilitiesChanged,
    events,
    stop() {
      adverts.stop()
      links.stop()
      clearInterval(timer)
      pubsub.removeEventListener('message', onMessage)
      intake.stop()
      pubsub.removeEventListener('subscription-change', onSub)
      node.removeEventListener('connection:open', onConn)
      node.removeEventListener('connection:close', onConn)
      node.removeEventListener('self:peer:update', onSelf)
    },
  }
}

interface Receiver {
  self: string
  peers: Map<string, KnownPeer>
  intake: AdvertIntake
  adverts: AdvertPublisher
  links: Links
  log: Logger
}

/** A gossipsub message: a newer advert of another peer updates what we know of it, then links and ours. */
async function receive(r: Receiver, msg: { topic: string; type: string; data: Uint8Array }) {
  if (msg.topic !== ADVERT_TOPIC || msg.type !== 'unsigned') return
  const { peers, links } = r
  try {
    const { body } = await r.intake.open(msg.data)
    const from = body.peer
    if (from === r.self) return
    const prev = peers.get(from)
    const p = advertised(prev, body, Date.now())
    if (p == null) return
    peers.set(from, p)
    // Let a newcomer learn about us quickly; a peer back with a new session (its seq starts again)
    // is one too, though we knew its PeerId: it forgot our advert, and the next repeat is 15 s off.
    if (prev == null || body.seq < prev.advert.seq) r.adverts.announce()
    links.refresh(from)
    if (prev == null) links.plan()
    else links.planSoon()
  } catch (err) {
    r.log('dropped an advert: %s', (err as Error).message)
  }
}

/** Forgets the peers not linked and not heard from since `before`. */
function dropLapsed(peers: Map<string, KnownPeer>, before: number, changed: () => void) {
  for (const p of peers.values()) {
    if (!p.direct && p.seenAt < before) {
      peers.delete(p.id)
      changed()
    }
  }
}
