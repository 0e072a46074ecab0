/**
 * Relays: keeping reservations on them (where they are: src/net/config.ts). A tab holds reservations on up to
 * RELAY_RESERVATIONS relays at once; each reservation gives it a `/p2p-circuit/webrtc` address.
 * When a relay goes, another takes its place and the new address goes into the next advert.
 */
import type { Connection, Libp2p, Logger } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { RelayUnavailableError } from '../shared/errors.ts'
import type { Service } from '../shared/lifecycle.ts'

/** Reservations a tab keeps (one `/p2p-circuit` listen address each, see src/net/node.ts). */
export const RELAY_RESERVATIONS = 2

/** The relays we hold a reservation on: the relay PeerIds in our own circuit addresses. */
export function reservedRelays(node: Pick<Libp2p, 'getMultiaddrs'>): string[] {
  const ids = new Set<string>()
  for (const ma of node.getMultiaddrs()) {
    const [relay] = ma.toString().split('/p2p-circuit')
    if (relay !== ma.toString()) ids.add(relay?.split('/p2p/').pop() ?? '')
  }
  ids.delete('')
  return [...ids]
}

export interface RelayKeeper extends Service {
  reserved(): string[]
  /** Configured relays with an open connection. */
  connected(): string[]
  /** Settles after the first dial round: resolves once a relay connects, else RelayUnavailableError. */
  ready: Promise<void>
  stop(): void
}

export interface KeepRelaysOptions {
  want?: number
  log?: Logger
  /** A relay that connected but gave no reservation within this is passed over; default 5 s. */
  reserveWithinMs?: number
  /** Redial backoff: from 1 s, doubling to this; default 30 s. */
  maxBackoffMs?: number
  /**
   * A relay open this long without our reservation, while we hold fewer than `want`, is hung up on
   * and redialled with the backoff; default 10 s (twice the transport's 5 s to reserve).
   */
  hangUpAfterMs?: number
}

interface Entry {
  addr: string
  id: string
  backoff: number
  nextAt: number
  dialing: boolean
  connectedAt: number
  /** Since when a tick has seen it open without our reservation while we held too few (0: not so). */
  openSince: number
  error?: string
}

/**
 * Keeps connections (and so reservations: the circuit transport reserves on any relay it connects
 * to while it holds fewer than it listens for) on `want` of `relays`, tried in a random order so
 * tabs spread over them. A relay that goes is replaced by the next reachable one at once, and
 * redialled with backoff while fewer than `want` are held. A relay already connected for
 * signalling is not dialled again: the transport's own discovery reserves on it when a slot frees.
 */
export function keepRelays(
  node: Pick<
    Libp2p,
    'dial' | 'getConnections' | 'getMultiaddrs' | 'addEventListener' | 'removeEventListener'
  >,
  relays: string[],
  opts: KeepRelaysOptions = {},
): RelayKeeper {
  const want = Math.min(opts.want ?? RELAY_RESERVATIONS, relays.length)
  const within = opts.reserveWithinMs ?? 5000
  const maxBackoff = opts.maxBackoffMs ?? 30_000
  const hangUpAfter = opts.hangUpAfterMs ?? 10_000
  const entries: Entry[] = relays
    .map((addr) => ({
      addr,
      id: addr.split('/p2p/').pop() ?? '',
      backoff: 1000,
      nextAt: 0,
      dialing: false,
      connectedAt: 0,
      openSince: 0,
    }))
    .map((e) => ({ e, k: Math.random() }))
    .sort((a, b) => a.k - b.k)
    .map(({ e }) => e)
  const isOpen = (e: Entry) =>
    node.getConnections().some((c) => c.remotePeer.toString() === e.id && c.status === 'open')
  let stopped = false
  let settle: { ok(): void; fail(e: Error): void } | undefined
  const ready = new Promise<void>((ok, fail) => {
    settle = { ok, fail }
  })
  ready.catch(() => {}) // a caller that never awaits it is told nothing; the keeper keeps trying
  const settleReady = () => {
    if (!settle) return
    if (entries.some(isOpen)) {
      settle.ok()
      settle = undefined
    } else if (entries.every((e) => e.error != null && !e.dialing)) {
      const why = entries.map((e) => `${e.addr}: ${e.error}`).join('; ')
      settle.fail(new RelayUnavailableError(`no relay reachable: ${why || 'none configured'}`))
      settle = undefined
    }
  }

  const dial = async (e: Entry) => {
    e.dialing = true
    try {
      await node.dial(multiaddr(e.addr), { signal: AbortSignal.timeout(within) })
      e.connectedAt = Date.now()
      e.error = undefined // the backoff falls back once it reserves: a full relay connects, then refuses
    } catch (err) {
      e.error = (err as Error).message
      e.nextAt = Date.now() + e.backoff
      e.backoff = Math.min(maxBackoff, e.backoff * 2)
      opts.log?.('relay %s unreachable: %s', e.addr, e.error)
    } finally {
      e.dialing = false
      settleReady()
      tick()
    }
  }

  function tick() {
    if (stopped) return
    const reserved = new Set(reservedRelays(node))
    const now = Date.now()
    const short = reserved.size < want
    for (const e of entries) {
      if (reserved.has(e.id)) e.backoff = 1000
      e.openSince = short && !reserved.has(e.id) && isOpen(e) ? e.openSince || now : 0
      recycle(e, now)
    }
    // Held, or being dialled, or connected and still within its time to reserve: each counts.
    let held = reserved.size
    for (const e of entries) {
      if (reserved.has(e.id)) continue
      if (e.dialing || (isOpen(e) && now - e.connectedAt < within)) held++
    }
    for (const e of entries) {
      if (held >= want) break
      if (reserved.has(e.id) || e.dialing || isOpen(e) || now < e.nextAt) continue
      held++
      void dial(e)
    }
  }

  /**
   * A relay open hangUpAfter without our reservation on it while we hold too few: the circuit
   * transport asks for one when it connects, and never again on that connection (a refusal, or a
   * timeout on a loaded machine, left a Node peer of the scale bench unreserved for minutes). Hang
   * up; it is redialled after its backoff, and a new connection asks again. Not while a relayed
   * connection goes through it: that is someone's signalling, or a link still being made. (A WebRTC
   * link signalled through it names it in its address too, but is direct and does not need it.)
   */
  function recycle(e: Entry, now: number) {
    if (e.dialing || e.openSince === 0 || now - e.openSince < hangUpAfter) return
    const through = `/p2p/${e.id}/p2p-circuit`
    const relayed = (c: Connection) =>
      c.status === 'open' && !c.direct && c.remoteAddr.toString().includes(through)
    if (node.getConnections().some(relayed)) return
    e.openSince = 0
    e.error = `connected for ${hangUpAfter} ms without a reservation`
    e.nextAt = now + e.backoff
    e.backoff = Math.min(maxBackoff, e.backoff * 2)
    opts.log?.('relay %s: %s; hanging up', e.addr, e.error)
    for (const c of node.getConnections())
      if (c.remotePeer.toString() === e.id) void c.close().catch(() => {})
  }

  const onChange = () => queueMicrotask(tick)
  node.addEventListener('connection:close', onChange)
  node.addEventListener('self:peer:update', onChange)
  const timer = setInterval(tick, 1000)
  tick()
  if (entries.length === 0) settleReady()
  return {
    reserved: () => reservedRelays(node),
    connected: () => entries.filter(isOpen).map((e) => e.id),
    ready,
    stop() {
      stopped = true
      clearInterval(timer)
      node.removeEventListener('connection:close', onChange)
      node.removeEventListener('self:peer:update', onChange)
    },
  }
}
