/**
 * Discovery over gossipsub: publishes our signed advert periodically and on change, tracks
 * other peers' adverts, and keeps direct WebRTC links to the most useful of them, within a budget
 * (src/net/link-plan.ts): more, and to holders of the models we use, while we submit.
 */
import type { Connection, Logger, PrivateKey } from '@libp2p/interface'
import { Circuit, WebRTC } from '@multiformats/multiaddr-matcher'
import type { Service } from '../shared/lifecycle.ts'
import { ADVERT_TOPIC } from '../shared/protocol.ts'
import type { AdvertBody, Capabilities } from './advert.ts'
import { type AdvertIntake, advertised, createAdvertIntake, type KnownPeer } from './advert-intake.ts'
import { fetchAdvertSnapshot } from './advert-snapshot.ts'
import { createLinks, type Links } from './discovery-links.ts'
import { type AdvertPublisher, createAdvertPublisher } from './discovery-publish.ts'
import { type LinkPlanOptions, linkPlanDefaults } from './link-plan.ts'
import type { BrowserNode } from './node.ts'

export { type KnownPeer, MAX_INVALID_ADVERTS } from './advert-intake.ts'

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
   * off, slots, models, engine); if only the free count did, within SLOT_ADVERT_GAP_MS when none was
   * advertised free, else within SLOT_CHANGE_GAP_MS; else not at all.
   */
  capabilitiesChanged(): void
  /** We are about to use `model` (a job, a fetch): link its holders and contributors with free slots. */
  want(model: string): void
  /** Replaces the direct link to `id` now, whatever the grace period: closes it, then dials again. */
  redial(id: string, signal: AbortSignal): Promise<void>
  /**
   * Contributors are known but none can be linked: each failed twice in a row. Undefined while
   * some link is up or still being tried, or no contributor is known.
   */
  noPath(): string | undefined
  /** Fires 'change' whenever the peer set, an advert, or a connection changes. */
  events: EventTarget
  /** Sends a pending advert first (a switch-off just before the stop: AdvertPublisher.stop). */
  stop(): Promise<void>
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
  const unlisten = listen(node, receiver)
  pubsub.subscribe(ADVERT_TOPIC)

  // Peers that start together would repeat their adverts together forever, every peer checking N
  // at once: each tick starts at a random phase and each repeat waits a jittered interval.
  const jittered = () => interval * (0.75 + 0.5 * Math.random())
  let gap = jittered()
  const onTick = () => {
    const now = Date.now()
    dropLapsed(peers, now - interval * 3, changed)
    links.plan()
    if (now - adverts.publishedAt() < gap - tick / 2) return
    gap = jittered()
    void adverts.publish()
  }
  let timer: ReturnType<typeof setInterval> | undefined
  const phase = setTimeout(() => {
    timer = setInterval(onTick, tick)
  }, Math.random() * tick)

  return {
    peers: () => [...peers.values()],
    get: (id) => peers.get(id),
    want: links.want,
    redial: links.redial,
    noPath: links.noPath,
    announce: adverts.announce,
    capabilitiesChanged: adverts.capabilitiesChanged,
    events,
    async stop() {
      await adverts.stop()
      links.stop()
      clearTimeout(phase)
      clearInterval(timer)
      unlisten()
      intake.stop()
    },
  }
}

/** Discovery's listeners on the node and on gossipsub; returns what removes them all. */
function listen(node: BrowserNode, r: Receiver): () => void {
  const pubsub = node.services.pubsub
  const onMessage = (evt: CustomEvent) => receive(r, evt.detail)
  const onConn = (evt: CustomEvent<Connection>) => connectionChanged(r, evt.type, evt.detail)
  // A link counts as direct once identify has been answered over it (src/net/link.ts).
  const onIdentify = (evt: CustomEvent<{ peerId: { toString(): string } }>) => {
    const id = evt.detail.peerId.toString()
    if (r.peers.has(id)) r.links.refresh(id)
  }
  const onAnnounce = () => r.adverts.announce()
  const on: [EventTarget, string, (e: CustomEvent<never>) => void][] = [
    [pubsub, 'message', onMessage],
    [pubsub, 'subscription-change', onAnnounce],
    [node, 'connection:open', onConn],
    [node, 'connection:close', onConn],
    [node, 'peer:identify', onIdentify],
    [node, 'self:peer:update', onAnnounce],
  ]
  for (const [target, type, fn] of on) target.addEventListener(type, fn as EventListener)
  return () => {
    for (const [target, type, fn] of on) target.removeEventListener(type, fn as EventListener)
  }
}

/** A connection opened or closed: cut off a blocked peer's link, watch new ones, ask a relay for adverts. */
function connectionChanged(r: Receiver, type: string, c: Connection) {
  const id = c.remotePeer.toString()
  if (type === 'connection:open' && r.intake.isBlocked(id) && WebRTC.matches(c.remoteAddr)) {
    c.abort(new Error('cut off for invalid adverts'))
    return
  }
  if (type === 'connection:open') r.links.watch(c)
  if (r.peers.has(id)) r.links.refresh(id)
  // A relay (a plain connection: not a direct link, not relayed) may hold the swarm's adverts.
  const plain = c.limits == null && !WebRTC.matches(c.remoteAddr) && !Circuit.matches(c.remoteAddr)
  if (type === 'connection:open' && plain) void snapshot(r, c)
}

interface Receiver {
  self: string
  peers: Map<string, KnownPeer>
  intake: AdvertIntake
  adverts: AdvertPublisher
  links: Links
  log: Logger
}

/**
 * A newcomer reads the swarm from its relay's snapshot; our own advert repeats at most this often
 * for newcomers (those on a relay without snapshots), so a burst of joins costs each peer one advert,
 * not one per join (N² adverts in all).
 */
const NEWCOMER_ADVERT_GAP_MS = 5000

/** A gossipsub message: a newer advert of another peer updates what we know of it, then links and ours. */
async function receive(r: Receiver, msg: { topic: string; type: string; data: Uint8Array }) {
  if (msg.topic !== ADVERT_TOPIC || msg.type !== 'unsigned') return
  try {
    const { body } = await r.intake.open(msg.data)
    const prev = r.peers.get(body.peer)
    if (!learn(r, body)) return
    // Let a newcomer learn about us; a peer back with a new session (its seq starts again) is one
    // too, though we knew its PeerId: it forgot our advert, and the next repeat is 15 s off.
    if (prev == null || body.seq < prev.advert.seq) r.adverts.announce(NEWCOMER_ADVERT_GAP_MS)
    if (prev == null) r.links.plan()
    else r.links.planSoon()
  } catch (err) {
    r.log('dropped an advert: %s', (err as Error).message)
  }
}

/** Keeps `body` if it is another peer's newer advert; true when it was kept. */
function learn(r: Receiver, body: AdvertBody, refresh = true): boolean {
  if (body.peer === r.self) return false
  const p = advertised(r.peers.get(body.peer), body, Date.now())
  if (p == null) return false
  r.peers.set(body.peer, p)
  if (refresh) r.links.refresh(body.peer)
  return true
}

/** The relay's adverts (src/net/advert-snapshot.ts), each opened as gossip is; a relay without them is no error. */
async function snapshot(r: Receiver, conn: Connection) {
  let adverts: Uint8Array[]
  try {
    adverts = await fetchAdvertSnapshot(conn, AbortSignal.timeout(SNAPSHOT_TIMEOUT_MS))
  } catch (err) {
    r.log('no advert snapshot from %s: %s', conn.remotePeer.toString(), (err as Error).message)
    return
  }
  // Learned first, refreshed and announced once: thousands of adverts, one 'change'.
  const kept: string[] = []
  for (const data of adverts) {
    const advert = await r.intake.open(data).catch(() => undefined)
    if (advert && learn(r, advert.body, false)) kept.push(advert.body.peer)
  }
  r.log('%d adverts from the snapshot of %s', kept.length, conn.remotePeer.toString())
  r.links.refreshMany(kept)
  if (kept.length > 0) r.links.plan()
}

/** Up to 8 MiB of adverts: enough time for a slow uplink. */
const SNAPSHOT_TIMEOUT_MS = 30_000

/** Forgets the peers not linked and not heard from since `before`. */
function dropLapsed(peers: Map<string, KnownPeer>, before: number, changed: () => void) {
  for (const p of peers.values()) {
    if (!p.direct && p.seenAt < before) {
      peers.delete(p.id)
      changed()
    }
  }
}
