/**
 * Adverts coming in over gossipsub: each one's bytes are checked once (by the topic validator, so an
 * invalid advert is not forwarded), a directly linked peer that sends too many invalid ones is cut off,
 * and a valid one replaces what we knew of its peer only if it is newer. Discovery (`discovery.ts`)
 * acts on the result: links, plans and our own adverts.
 */
import { TopicValidatorResult } from '@libp2p/gossipsub'
import type { Logger } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { WebRTC } from '@multiformats/multiaddr-matcher'
import { ADVERT_TOPIC } from '../shared/protocol.ts'
import { type Advert, type AdvertBody, newerAdvert, openAdvert } from './advert.ts'
import type { LinkPath } from './link.ts'
import type { BrowserNode } from './node.ts'

export interface KnownPeer {
  id: string
  advert: AdvertBody
  seenAt: number
  firstSeenAt: number
  /** A WebRTC link whose ICE transport is connected and over which the far side has answered (link.ts). */
  direct: boolean
  /** That link's path (selected candidate pair), once known. */
  path?: LinkPath
  /** Why the last attempt to link failed, while there is no direct link. */
  linkError?: string
  /** Attempts to link that failed in a row, while there is no direct link. */
  linkFailures?: number
  /** After failed attempts, when the planner may dial it again (a job's redial does not wait). */
  retryAt?: number
}

/** A peer that failed to link and advertises after a silence is dialled again within this long. */
export const ALIVE_RETRY_MS = 2_000

/**
 * A newer advert after a silence shows its peer back (the relay restarted, say): a long wait is cut
 * short. Not one within the silence: a busy peer that stays unreachable re-advertises its free slots
 * each second, and must still wait out its doubling retry.
 */
export const ALIVE_SILENCE_MS = 5_000
function retryAfterAdvert(prev: KnownPeer, now: number): Pick<KnownPeer, 'retryAt'> {
  const back = now - prev.seenAt >= ALIVE_SILENCE_MS
  return { retryAt: back ? Math.min(prev.retryAt!, now + ALIVE_RETRY_MS) : prev.retryAt! }
}

/** Invalid adverts a directly linked peer may send before it is cut off, and for how long. */
export const MAX_INVALID_ADVERTS = 16
const BLOCK_MS = 10 * 60_000

export interface AdvertIntake {
  /** The advert in these bytes, checked (once for the same bytes); rejects an invalid one. */
  open(data: Uint8Array): Promise<Advert>
  /** `id` was cut off for invalid adverts: its links are neither dialled nor accepted. */
  isBlocked(id: string): boolean
  stop(): void
}

export interface AdvertIntakeOptions {
  node: BrowserNode
  log: Logger
  /** `id` has just been cut off (its WebRTC links are already aborted). */
  onCutOff(id: string): void
}

export function createAdvertIntake(o: AdvertIntakeOptions): AdvertIntake {
  const { node, log } = o
  const { pubsub } = node.services
  // Opened once: by the topic validator, then on delivery.
  const opened = new WeakMap<Uint8Array, Promise<Advert>>()
  const open = (data: Uint8Array) => {
    let p = opened.get(data)
    if (!p) {
      p = openAdvert(data)
      opened.set(data, p)
    }
    return p
  }
  // Ignore, not Reject: the sender is mostly the relay forwarding someone else's advert. A peer on a
  // direct link forwards nothing it did not check, so invalid adverts from one are its own: past
  // MAX_INVALID_ADVERTS it is cut off, as gossipsub keeps state for every message it saw for 2 min.
  const invalid = new Map<string, number>()
  const blocked = new Map<string, number>() // peer → until
  const isBlocked = (id: string) => (blocked.get(id) ?? 0) > Date.now()
  const cutOff = (id: string) => {
    blocked.set(id, Date.now() + BLOCK_MS)
    invalid.delete(id)
    log('cutting off %s: more than %d invalid adverts', id, MAX_INVALID_ADVERTS)
    for (const c of node.getConnections(peerIdFromString(id))) {
      if (WebRTC.matches(c.remoteAddr)) c.abort(new Error('invalid adverts'))
    }
    o.onCutOff(id)
  }
  pubsub.topicValidators.set(ADVERT_TOPIC, (peer, msg) =>
    open(msg.data).then(
      () => TopicValidatorResult.Accept,
      () => {
        const id = peer.toString()
        const direct = node.getConnections(peer).some((c) => WebRTC.matches(c.remoteAddr))
        const n = (invalid.get(id) ?? 0) + 1
        if (direct) invalid.set(id, n)
        if (direct && n > MAX_INVALID_ADVERTS) cutOff(id)
        return TopicValidatorResult.Ignore
      },
    ),
  )
  return {
    open,
    isBlocked,
    stop: () => void pubsub.topicValidators.delete(ADVERT_TOPIC),
  }
}

/**
 * What we know of `body.peer` once its advert `body` arrives, or undefined when it is not newer than
 * `prev`. Newer means a later `ts`, then a higher `seq`: a replayed advert from an earlier session (a
 * higher `seq`, an older `ts`) does not replace the current one.
 */
export function advertised(
  prev: KnownPeer | undefined,
  body: AdvertBody,
  now: number,
): KnownPeer | undefined {
  if (prev && !newerAdvert([body.ts, body.seq], [prev.advert.ts, prev.advert.seq])) return undefined
  return {
    id: body.peer,
    advert: body,
    seenAt: now,
    firstSeenAt: prev?.firstSeenAt ?? now,
    direct: false,
    // The link's path does not change with an advert: kept until refresh learns otherwise.
    ...(prev?.path ? { path: prev.path } : {}),
    // A new advert does not make the last failed attempt to link succeed.
    ...(prev?.linkError ? { linkError: prev.linkError } : {}),
    ...(prev?.linkFailures ? { linkFailures: prev.linkFailures } : {}),
    ...(prev?.retryAt ? retryAfterAdvert(prev, now) : {}),
  }
}
