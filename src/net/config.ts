/**
 * The page's network settings: relays and ICE servers, from `?relay=` on the page URL and
 * `peer-compute.json` next to the page. A server that mints time-limited TURN credentials says when
 * they expire (`iceServersExpireAt`); the tab fetches fresh ones before then.
 */
import { InvalidOptionError } from '../shared/errors.ts'

export interface NetConfig {
  relays: string[]
  /** Passed to every RTCPeerConnection exactly as given. */
  iceServers: RTCIceServer[]
  /** Epoch ms when minted TURN credentials expire; absent for static ones. */
  iceServersExpireAt?: number
}

const MAX_ICE_SERVERS = 16
const MAX_RELAYS = 16
const str = (v: unknown, max = 2048): v is string => typeof v === 'string' && v.length > 0 && v.length <= max

/** Checks a `RTCIceServer[]` from a config file or a caller; throws InvalidOptionError saying what is wrong. */
export function parseIceServers(x: unknown): RTCIceServer[] {
  if (x == null) return []
  if (!Array.isArray(x) || x.length > MAX_ICE_SERVERS) {
    throw new InvalidOptionError(`iceServers must be an array of at most ${MAX_ICE_SERVERS} RTCIceServer`)
  }
  return x.map((s, i) => {
    const o = (s ?? {}) as Record<string, unknown>
    const urls = Array.isArray(o.urls) ? o.urls : [o.urls]
    if (urls.length === 0 || !urls.every((u) => str(u) && /^(stun|stuns|turn|turns):/.test(u))) {
      throw new InvalidOptionError(`iceServers[${i}].urls must be stun:, stuns:, turn: or turns: URLs`)
    }
    if (o.username !== undefined && !str(o.username)) {
      throw new InvalidOptionError(`iceServers[${i}].username must be a string`)
    }
    if (o.credential !== undefined && !str(o.credential)) {
      throw new InvalidOptionError(`iceServers[${i}].credential must be a string`)
    }
    if (urls.some((u) => (u as string).startsWith('turn')) && (o.username == null || o.credential == null)) {
      throw new InvalidOptionError(`iceServers[${i}]: a TURN server needs a username and a credential`)
    }
    return {
      urls: o.urls as string | string[],
      ...(o.username !== undefined ? { username: o.username as string } : {}),
      ...(o.credential !== undefined ? { credential: o.credential as string } : {}),
    }
  })
}

/**
 * Reads the config; a missing or broken `peer-compute.json` gives no relays and no ICE servers.
 * `peer` names us to a server that mints TURN credentials (their username is `expiry:peer`).
 */
export async function loadNetConfig(pageUrl: string = location.href, peer?: string): Promise<NetConfig> {
  const fromQuery = new URL(pageUrl).searchParams.getAll('relay')
  let cfg: Record<string, unknown> = {}
  try {
    const url = new URL('peer-compute.json', pageUrl)
    if (peer) url.searchParams.set('peer', peer)
    const res = await fetch(url, { cache: 'no-store' })
    if (res.ok) cfg = ((await res.json()) ?? {}) as Record<string, unknown>
  } catch {}
  const relays = Array.isArray(cfg.relays) ? cfg.relays.filter((r) => str(r)).slice(0, MAX_RELAYS) : []
  let iceServers: RTCIceServer[] = []
  try {
    iceServers = parseIceServers(cfg.iceServers)
  } catch (err) {
    console.error(`peer-compute.json: ${(err as Error).message}`)
  }
  const expire = cfg.iceServersExpireAt
  return {
    // A crafted link must not make a tab dial any number of relays.
    relays: fromQuery.length > 0 ? fromQuery.slice(0, MAX_RELAYS) : (relays as string[]),
    iceServers,
    ...(typeof expire === 'number' && Number.isFinite(expire) ? { iceServersExpireAt: expire } : {}),
  }
}

/** A page served from this machine: host candidates reach every peer, no ICE server is needed. */
export function isLoopbackPage(pageUrl: string = location.href): boolean {
  const host = new URL(pageUrl).hostname
  return host === 'localhost' || host === '[::1]' || /^127\./.test(host)
}

/**
 * Keeps `get()` current: minted credentials are fetched again at 80 % of their lifetime (at least
 * 10 s apart). Static ones never change.
 */
export function iceServerSource(initial: NetConfig, pageUrl?: string, peer?: string) {
  let current = initial
  let timer: ReturnType<typeof setTimeout> | undefined
  const schedule = () => {
    if (current.iceServersExpireAt == null) return
    const left = current.iceServersExpireAt - Date.now()
    timer = setTimeout(refresh, Math.max(10_000, left * 0.8))
  }
  const refresh = async () => {
    const next = await loadNetConfig(pageUrl, peer).catch(() => undefined)
    if (next && next.iceServers.length > 0) current = next
    schedule()
  }
  schedule()
  return {
    get: () => current.iceServers,
    stop: () => clearTimeout(timer),
  }
}
