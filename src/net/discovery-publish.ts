/**
 * Discovery's own adverts (`discovery.ts`): signed and published on change, debounced, and with
 * free-slot changes held back so that each advert is worth its signature.
 */

import type { Logger, PrivateKey } from '@libp2p/interface'
import { raceSignal } from 'race-signal'
import { ADVERT_TOPIC } from '../shared/protocol.ts'
import { type AdvertBody, type Capabilities, signAdvert } from './advert.ts'
import { type BrowserNode, webrtcAddrs } from './node.ts'

/**
 * Free slots after none were advertised are published at most this often (trailing): capacity that
 * nobody knows of goes unused. Requesters count their own jobs in between.
 */
export const SLOT_ADVERT_GAP_MS = 500
/**
 * Any other free-slot change waits this long: fewer free slots than advertised costs a requester a
 * 'busy' reply over its direct link (the scheduler then holds off that peer), and every advert
 * costs every peer in the swarm a signature check.
 */
export const SLOT_CHANGE_GAP_MS = 5_000

export interface AdvertPublisherOptions {
  node: BrowserNode
  privateKey: PrivateKey
  capabilities: () => Capabilities
  log: Logger
}

export interface AdvertPublisher {
  /** Publishes now (or retries soon while we have no dialable address). */
  publish(): Promise<void>
  /** See Discovery.announce. */
  announce(minGapMs?: number): void
  /** See Discovery.capabilitiesChanged. */
  capabilitiesChanged(): void
  /** When the last advert went out (0: none yet). */
  publishedAt(): number
  /**
   * Schedules nothing more. An advert still pending for anything but free slots goes out first (at
   * most STOP_FLUSH_MS): a contributor that stops right after switching off (`contribute` on SIGTERM)
   * tells the swarm so, where its WebRTC links stay open on the far side until ICE gives up (~8 s).
   */
  stop(): Promise<void>
}

/** How long a stop waits for its last advert to go out. */
const STOP_FLUSH_MS = 1000

export function createAdvertPublisher(opts: AdvertPublisherOptions): AdvertPublisher {
  const { node, log } = opts
  const self = node.peerId.toString()
  const pubsub = node.services.pubsub
  let seq = 0
  let pending: ReturnType<typeof setTimeout> | undefined
  let dueAt = 0
  let lastPublished = 0
  let published: Capabilities | undefined
  // The pending advert is only for a free-slot change: dropped if the count comes back first.
  let slotOnly = false
  // Stopped, it schedules nothing: a job ending as the node stops must not publish (or retry) after it.
  let stopped = false
  // Each advert costs the swarm a signature check at every peer (~25 ms of CPU in all): an unchanged one is no news.
  const capabilitiesChanged = () => {
    const now = opts.capabilities()
    if (published === undefined) return announce()
    const { slots, ...offer } = now
    const { slots: was, ...before } = published
    if (JSON.stringify(offer) !== JSON.stringify(before)) announce()
    else if (slots !== was) {
      if (!pending) slotOnly = true
      schedule(was === 0 ? SLOT_ADVERT_GAP_MS : SLOT_CHANGE_GAP_MS)
    } else if (pending && slotOnly) {
      clearTimeout(pending)
      pending = undefined
      slotOnly = false
    }
  }

  async function publish() {
    clearTimeout(pending)
    pending = undefined
    slotOnly = false
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
    slotOnly = false
    schedule(minGapMs)
  }
  function schedule(minGapMs: number) {
    if (stopped) return
    const at = Math.max(Date.now() + 50, lastPublished + minGapMs)
    if (pending && dueAt <= at) return
    clearTimeout(pending)
    dueAt = at
    pending = setTimeout(publish, at - Date.now())
  }

  return {
    publish,
    announce,
    capabilitiesChanged,
    publishedAt: () => lastPublished,
    async stop() {
      if (stopped) return
      const last = pending !== undefined && !slotOnly
      clearTimeout(pending)
      pending = undefined
      if (last) await raceSignal(publish(), AbortSignal.timeout(STOP_FLUSH_MS)).catch(() => {})
      stopped = true
      clearTimeout(pending)
    },
  }
}
