/** Flags the peer commands share: where the swarm is, where state lives, and sizes in words. */

import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import type { ParseArgsConfig } from 'node:util'
import { parseIceServers } from '../src/net/config.ts'
import { InvalidOptionError } from '../src/shared/errors.ts'
import type { NodePeerOptions } from './peer.ts'

export const PEER_FLAGS = {
  relay: { type: 'string', multiple: true },
  config: { type: 'string' },
  ice: { type: 'string', multiple: true },
  'ice-username': { type: 'string' },
  'ice-credential': { type: 'string' },
  dir: { type: 'string' },
  catalog: { type: 'string' },
  threads: { type: 'string' },
  'max-links': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options']

export const PEER_HELP = `  --relay <multiaddr>       a relay to join (repeat for several)
  --config <url|file>       peer-compute.json: a site URL (relays, minted TURN credentials) or a file
  --ice <url>               a STUN or TURN URL (repeat); TURN needs --ice-username and --ice-credential
  --dir <path>              data directory: key, model cache, jobs, credit log (default ~/.peer-compute)
  --catalog <file|url>      catalog.json (default: the one shipped with peer-compute)
  --threads <n>             onnxruntime-node threads per model
  --max-links <n>           direct links this peer dials at most (default 32)`

type PeerValues = {
  [K in keyof typeof PEER_FLAGS]?: (typeof PEER_FLAGS)[K] extends { multiple: true }
    ? string[]
    : (typeof PEER_FLAGS)[K] extends { type: 'boolean' }
      ? boolean
      : string
}

/** A whole number in [min, max], or a usage error naming the flag. */
export function intFlag(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw new InvalidOptionError(`--${name} must be a whole number from ${min} to ${max}, got "${v}"`)
  return n
}

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
}

/** "512MiB", "2G", "1048576": bytes, or a usage error naming the flag. */
export function bytesFlag(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(v.trim())
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined
  if (!m || unit === undefined)
    throw new InvalidOptionError(`--${name} must be a size such as 512MiB or 2GiB, got "${v}"`)
  return Math.floor(Number(m[1]) * unit)
}

/** The relays, ICE servers and data directory the flags name; a config file is read here. */
export async function peerOptions(v: PeerValues): Promise<NodePeerOptions> {
  const dir = v.dir ?? process.env.PEER_COMPUTE_DIR ?? join(homedir(), '.peer-compute')
  const o: NodePeerOptions = { dir }
  if (v.catalog) o.catalog = v.catalog
  const threads = intFlag('threads', v.threads, 1, 256)
  if (threads) o.threads = threads
  const maxLinks = intFlag('max-links', v['max-links'], 1, 512)
  if (maxLinks) o.maxLinks = maxLinks
  let relays = v.relay ?? []
  let ice: RTCIceServer[] = []
  if (v.config && /^https?:\/\//.test(v.config)) o.configUrl = v.config
  else if (v.config) {
    let cfg: { relays?: unknown; iceServers?: unknown }
    try {
      cfg = JSON.parse(await readFile(v.config, 'utf8'))
    } catch (err) {
      throw new InvalidOptionError(`--config ${v.config}: ${(err as Error).message}`)
    }
    if (
      cfg.relays !== undefined &&
      !(Array.isArray(cfg.relays) && cfg.relays.every((r) => typeof r === 'string'))
    )
      throw new InvalidOptionError(`--config ${v.config}: relays must be a list of multiaddrs`)
    relays = [...relays, ...((cfg.relays as string[] | undefined) ?? [])]
    ice = parseIceServers(cfg.iceServers)
  }
  if (v.ice?.length) {
    const auth = v['ice-username']
      ? { username: v['ice-username'], credential: v['ice-credential'] ?? '' }
      : {}
    ice = [
      ...ice,
      ...parseIceServers(v.ice.map((urls) => (urls.startsWith('turn') ? { urls, ...auth } : { urls }))),
    ]
  }
  if (!o.configUrl) {
    if (relays.length === 0)
      throw new InvalidOptionError('no relay: pass --relay <multiaddr> or --config <url|file>')
    o.relays = relays
    o.iceServers = ice
  } else {
    if (relays.length) o.relays = relays
    if (ice.length) o.iceServers = ice
  }
  return o
}
