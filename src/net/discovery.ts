/**
 * Discovery over gossipsub: publishes our signed advert periodically and on change, tracks
 * other peers' adverts, and keeps direct WebRTC links to the most useful of them, within a budget
 * (src/net/link-plan.ts): more, and to holders of the models we use, while we submit.
 */
import type { Connection, Logger, PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { WebRTC } from '@multiformats/multiaddr-matcher'
import type { Service } from '../shared/lifecycle.ts'
import { ADVERT_TOPIC } from '../shared/protocol.ts'
import { type AdvertBody, type Capabilities, signAdvert } from './advert.ts'
import { advertised, createAdvertIntake, type KnownPeer } from './advert-intake.ts'
import { isDirect, linkPath, peerConnectionOf } from './link.ts'
import { type LinkPlanOptions, linkPlanDefaults, planLinks } from './link-plan.ts'
import { type BrowserNode, directConnection, webrtcAddrs } from './node.ts'

export { type KnownPeer, MAX_INVALID_ADVERTS } from './advert-intake.ts'

/** A link whose ICE transport has not connected this long after it opened is closed and dialled again. */
export const LINK_CONNECT_MS = 10_000

/** A link ICE reports disconnected this long is closed: its jobs go elsewhere, then it is redialled. */
export const LINK_DISCONNECTED_MS = 3_000

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

/** Free-slot changes are published at most this often (trailing): requesters count their own jobs in between. */
export const SLOT_ADVERT_GAP_MS = 500

const PLAN_GAP_MS = 250

/** A model we submitted counts as wanted (more links, to its holders first) this long. */
const WANT_MS = 5 * 60_000

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
  const grace = opts.dialGraceMs ?? 3000
  const self = node.peerId.toString()
  const pubsub = node.services.pubsub
  const peers = new Map<string, KnownPeer>()
  const dialing = new Set<string>()
  const events = new EventTarget()
  const changed = () => events.dispatchEvent(new Event('change'))
  const linkOpts = { ...linkPlanDefaults(opts.links?.budget), ...opts.links }
  const wanted = new Map<string, number>() // model → when last wanted
  const activeAt = new Map<string, number>() // peer → when its link last carried a job or model stream
  let seq = 0
  let pending: ReturnType<typeof setTimeout> | undefined
  let dueAt = 0
  let lastPublished = 0
  let published: Capabilities | undefined
  // Stopped, it schedules nothing: a job ending as the node stops must not publish (or retry) after it.
  let stopped = false
  // Each advert costs the swarm a signature check at every peer (~25 ms of CPU in all): an unchanged one is no news.
  const capabilitiesChanged = () => {
    const now = opts.capabilities()
    if (published === undefined) return announce()
    const { slots, ...offer } = now
    const { slots: was, ...before } = published
    if (JSON.stringify(offer) !== JSON.stringify(before)) announce()
    else if (slots !== was) announce(SLOT_ADVERT_GAP_MS)
  }

  async function publish() {
    clearTimeout(pending)
    pending = undefined
    if (stopped) return
    const addrs = webrtcAddrs(node)
    // Nothing dialable yet: a reservation brings addresses (self:peer:update); try again soon anyway.
    if (addrs.length === 0) {
      dueAt = Date.now() + 1000
      pending = setTimeout(publish, 1000)
      return
    }
    lastPublished = Date.now()
    const caps = opts.capabilities()
    published = caps
    const body: AdvertBody = { ...caps, v: 1, peer: self, addrs, seq: ++seq, ts: Date.now() }
    try {
      await pubsub.publish(ADVERT_TOPIC, await signAdvert(body, opts.privateKey))
    } catch (err) {
      log.error('advert publish failed: %s', (err as Error).message)
    }
  }
  const announce = (minGapMs = 0) => {
    if (stopped) return
    const at = Math.max(Date.now() + 50, lastPublished + minGapMs)
    if (pending && dueAt <= at) return
    clearTimeout(pending)
    dueAt = at
    pending = setTimeout(publish, at - Date.now())
  }

  async function dial(p: KnownPeer) {
    if (p.direct || dialing.has(p.id) || isBlocked(p.id)) return
    if (directConnection(node, peerIdFromString(p.id))) return
    if (self > p.id && Date.now() - p.firstSeenAt < grace) return
    dialing.add(p.id)
    const errors: string[] = []
    try {
      for (const addr of p.advert.addrs) {
        try {
          await node.dial(multiaddr(addr), { signal: AbortSignal.timeout(10_000) })
          errors.length = 0
          break
        } catch (err) {
          log('dial %s failed: %s', addr, (err as Error).message)
          errors.push((err as Error).message.slice(0, 200))
        }
      }
    } finally {
      dialing.delete(p.id)
      // A dial can resolve with a link still connecting (the peer's own, reused): the last error
      // stands until a link connects (refresh) or the watch closes it with a reason of its own.
      const known = peers.get(p.id)
      if (known && errors.length > 0) known.linkError = errors.join('; ')
      refresh(p.id)
    }
  }

  /** Adverts of known peers arrive often (free slots change with every job): they re-plan at most this often. */
  let planTimer: ReturnType<typeof setTimeout> | undefined
  const planSoon = () => {
    if (stopped) return
    planTimer ??= setTimeout(plan, PLAN_GAP_MS)
  }

  /** Dials the links the plan wants and closes the ones it does not. */
  function plan() {
    clearTimeout(planTimer)
    planTimer = undefined
    if (stopped) return
    const now = Date.now()
    for (const [m, at] of wanted) if (now - at > WANT_MS) wanted.delete(m)
    // One pass over the connections, not a PeerId parse and lookup per known peer.
    const links = new Map<string, Connection>()
    for (const c of node.getConnections()) if (isDirect(c)) links.set(c.remotePeer.toString(), c)
    const candidates = [...peers.values()]
      .filter((p) => !isBlocked(p.id))
      .map((p) => {
        const link = links.get(p.id)
        const busy = link?.streams.some((st) => st.protocol?.startsWith('/peer-compute/')) ?? false
        if (link && (busy || !activeAt.has(p.id))) activeAt.set(p.id, now)
        if (!link) activeAt.delete(p.id)
        return {
          id: p.id,
          contributing: p.advert.contributing && p.advert.eps.length > 0,
          free: p.advert.slots,
          models: p.advert.models,
          firstSeenAt: p.firstSeenAt,
          linked: link != null,
          outbound: link?.direction === 'outbound',
          idleMs: link ? now - (activeAt.get(p.id) ?? now) : 0,
        }
      })
    const { dial: toDial, close } = planLinks(candidates, { ...linkOpts, wanted: new Set(wanted.keys()) })
    for (const id of close) {
      log('closing the idle link to %s (link budget)', id)
      void links
        .get(id)
        ?.close()
        .catch(() => {})
    }
    for (const id of toDial) {
      const p = peers.get(id)
      if (p) void dial(p)
    }
  }

  function refresh(id: string) {
    const p = peers.get(id)
    if (p == null) return
    const link = directConnection(node, peerIdFromString(id))
    p.direct = link != null
    if (link == null) delete p.path
    else {
      delete p.linkError
      void linkPath(link).then((path) => {
        if (path && p.path !== path && peers.get(id) === p) {
          p.path = path
          changed()
        }
      })
    }
    changed()
  }

  // Watch each WebRTC link's ICE state: direct only once connected, closed when it never gets there.
  const watched = new WeakSet<object>()
  function watch(conn: Connection) {
    const pc = peerConnectionOf(conn)
    if (pc == null || watched.has(pc)) return
    watched.add(pc)
    const id = conn.remotePeer.toString()
    let lost: ReturnType<typeof setTimeout> | undefined
    const close = (why: string) => {
      log('closing the link to %s: %s', id, why)
      const known = peers.get(id)
      if (known) known.linkError = why
      conn.abort(new Error(why))
    }
    const never = setTimeout(() => {
      if (pc.connectionState !== 'connected') close(`ICE did not connect within ${LINK_CONNECT_MS} ms`)
    }, LINK_CONNECT_MS)
    // A dialled link opens already connected: no event clears the timer, and a blip in its 10th
    // second would close it as never connected, without the disconnect grace.
    if (pc.connectionState === 'connected') clearTimeout(never)
    pc.addEventListener('connectionstatechange', () => {
      const state = pc.connectionState
      if (state === 'connected') {
        clearTimeout(never)
        clearTimeout(lost)
        lost = undefined
      } else if (state === 'disconnected') {
        lost ??= setTimeout(
          () => close(`ICE disconnected for ${LINK_DISCONNECTED_MS} ms`),
          LINK_DISCONNECTED_MS,
        )
      } else if (state === 'failed' || state === 'closed') {
        clearTimeout(never)
        clearTimeout(lost)
        if (state === 'failed') close('ICE failed')
      }
      refresh(id)
    })
  }

  const intake = createAdvertIntake({ node, log, onCutOff: changed })
  const isBlocked = intake.isBlocked

  const onMessage = async (evt: CustomEvent) => {
    const msg = evt.detail
    if (msg.topic !== ADVERT_TOPIC || msg.type !== 'unsigned') return
    try {
      const { body } = await intake.open(msg.data)
      const from = body.peer
      if (from === self) return
      const prev = peers.get(from)
      const p = advertised(prev, body, Date.now())
      if (p == null) return
      peers.set(from, p)
      // Let a newcomer learn about us quickly; a peer back with a new session (its seq starts again)
      // is one too, though we knew its PeerId: it forgot our advert, and the next repeat is 15 s off.
      if (prev == null || body.seq < prev.advert.seq) announce()
      refresh(from)
      if (prev == null) plan()
      else planSoon()
    } catch (err) {
      log('dropped an advert: %s', (err as Error).message)
    }
  }

  const onConn = (evt: CustomEvent) => {
    const id = evt.detail.remotePeer.toString()
    if (evt.type === 'connection:open' && isBlocked(id) && WebRTC.matches(evt.detail.remoteAddr)) {
      evt.detail.abort(new Error('cut off for invalid adverts'))
      return
    }
    if (evt.type === 'connection:open') watch(evt.detail)
    if (peers.has(id)) refresh(id)
  }
  const onSelf = () => announce()
  const onSub = () => announce()

  pubsub.addEventListener('message', onMessage)
  pubsub.addEventListener('subscription-change', onSub)
  node.addEventListener('connection:open', onConn)
  node.addEventListener('connection:close', onConn)
  node.addEventListener('self:peer:update', onSelf)
  pubsub.subscribe(ADVERT_TOPIC)

  const timer = setInterval(() => {
    const now = Date.now()
    for (const p of peers.values()) {
      if (!p.direct && now - p.seenAt > interval * 3) {
        peers.delete(p.id)
        changed()
      }
    }
    plan()
    if (now - lastPublished >= interval - tick / 2) void publish()
  }, tick)

  return {
    peers: () => [...peers.values()],
    get: (id) => peers.get(id),
    want(model) {
      const fresh = !wanted.has(model)
      wanted.set(model, Date.now())
      if (fresh) plan()
    },
    async redial(id, signal) {
      const stale = directConnection(node, peerIdFromString(id))
      await stale?.close().catch(() => stale.abort(new Error('replaced: it could not open streams')))
      const p = peers.get(id)
      for (const addr of p?.advert.addrs ?? []) {
        try {
          await node.dial(multiaddr(addr), { signal: AbortSignal.any([signal, AbortSignal.timeout(10_000)]) })
          return
        } catch (err) {
          log('redial %s failed: %s', addr, (err as Error).message)
        }
      }
      refresh(id)
    },
    noPath() {
      const contributors = [...peers.values()].filter((p) => p.advert.contributing && p.advert.eps.length > 0)
      if (contributors.length === 0) return undefined
      if (contributors.some((p) => p.direct || dialing.has(p.id) || p.linkError == null)) return undefined
      return `no direct path to any of ${contributors.length} contributor(s): ${contributors[0]!.linkError}`
    },
    announce,
    capabilitiesChanged,
    events,
    stop() {
      stopped = true
      clearInterval(timer)
      clearTimeout(planTimer)
      if (pending) clearTimeout(pending)
      pubsub.removeEventListener('message', onMessage)
      intake.stop()
      pubsub.removeEventListener('subscription-change', onSub)
      node.removeEventListener('connection:open', onConn)
      node.removeEventListener('connection:close', onConn)
      node.removeEventListener('self:peer:update', onSelf)
    },
  }
}
