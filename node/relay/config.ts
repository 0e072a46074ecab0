/** The relay's settings: command-line flags, each with an environment variable behind it. */
import { isIP } from 'node:net'
import { parseArgs } from 'node:util'
import { multiaddr } from '@multiformats/multiaddr'
import { InvalidOptionError } from '../../src/shared/errors.ts'

export interface RelayConfig {
  /** Multiaddrs to listen on (WebSockets, no TLS: a proxy in front terminates it). */
  listen: string[]
  /** Multiaddrs to advertise instead of the listen ones; empty: the listen ones. */
  announce: string[]
  keyFile: string
  addrFile: string
  /** Other relays (with `/p2p/<id>`) to peer with, so adverts cross between relays. */
  peers: string[]
  maxReservations: number
  maxConnsPerIp: number
  /** Addresses (CIDR or single) exempt from maxConnsPerIp: a reverse proxy on this host. */
  exemptIps: string[]
  /** Adverts per minute forwarded per advertising peer. */
  advertRate: number
  /** Where to serve GET /peer-compute.json (with minted TURN credentials), if anywhere. */
  http?: { host: string; port: number }
}

export const RELAY_DEFAULTS = {
  listen: ['127.0.0.1:9090'],
  keyFile: '.relay/key',
  addrFile: '.relay/relay.json',
  maxReservations: 1024,
  maxConnsPerIp: 64,
  exemptIps: ['127.0.0.0/8', '::1'],
  advertRate: 60,
}

export const RELAY_HELP = `Usage: relay [options]   (node dist-relay/relay.mjs, or npm run relay)

A circuit-relay-v2 server and gossipsub hub for peer-compute tabs: WebRTC signalling and adverts only.
Every option can also be set by the environment variable shown; a flag wins over its variable.
Lists in variables are separated by commas or spaces.

  --listen ADDR          where to listen: host:port or a /ws multiaddr; repeatable
                         [RELAY_LISTEN, default ${RELAY_DEFAULTS.listen[0]}]
  --announce ADDR        address to advertise instead, e.g. /dns4/relay.example.com/tcp/443/wss
                         or wss://relay.example.com; repeatable [RELAY_ANNOUNCE]
  --key-file PATH        Ed25519 key, created on first run; keeps the PeerId stable
                         [RELAY_KEY_FILE, default ${RELAY_DEFAULTS.keyFile}]
  --addr-file PATH       JSON written at start: {"relays": [announced addresses with /p2p/<id>]}.
                         Other keys in an existing file, and other relays' entries, are kept,
                         so it can be the site's peer-compute.json [RELAY_ADDR_FILE, default ${RELAY_DEFAULTS.addrFile}]
  --peer ADDR            another relay to peer with (a multiaddr ending /p2p/<id>); redialled
                         while down; repeatable [RELAY_PEERS]
  --max-reservations N   circuit reservations held at once [RELAY_MAX_RESERVATIONS, default ${RELAY_DEFAULTS.maxReservations}]
  --max-conns-per-ip N   connections from one IP address [RELAY_MAX_CONNS_PER_IP, default ${RELAY_DEFAULTS.maxConnsPerIp}]
  --exempt-ip CIDR       addresses free of --max-conns-per-ip (a reverse proxy); repeatable
                         [RELAY_EXEMPT_IPS, default ${RELAY_DEFAULTS.exemptIps.join(',')}]
  --advert-rate N        adverts per minute forwarded per peer; the excess is dropped, the
                         newest held back until it fits [RELAY_ADVERT_RATE, default ${RELAY_DEFAULTS.advertRate}]
  --http HOST:PORT       also serve GET /peer-compute.json there: the addr-file's contents plus
                         ICE servers from PC_STUN_URLS, PC_TURN_URLS and PC_TURN_SECRET (TURN
                         credentials minted per request, valid PC_TURN_TTL s) [RELAY_HTTP]
  --host HOST, --port N  shorthand for --listen HOST:PORT [RELAY_HOST, RELAY_PORT]
  -h, --help             this text
`

const list = (v: string | undefined) => (v ?? '').split(/[\s,]+/).filter(Boolean)

function count(name: string, raw: string | undefined, fallback: number): number {
  if (raw == null || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 1)
    throw new InvalidOptionError(`${name} must be a positive integer, not "${raw}"`)
  return n
}

const bracketed = (host: string) => host.replace(/^\[(.*)\]$/, '$1')
const ipProto = (host: string) =>
  /^\d+\.\d+\.\d+\.\d+$/.test(host) ? 'ip4' : host.includes(':') ? 'ip6' : 'dns'

/** `host:port`, `[v6]:port` or `:port` (all interfaces) as a `/ws` multiaddr; a multiaddr as given. */
export function listenAddr(addr: string): string {
  if (addr.startsWith('/')) {
    const ma = multiaddr(addr).toString()
    if (!/\/ws$/.test(ma) || /\/(tls|wss)\b/.test(ma))
      throw new InvalidOptionError(`--listen ${addr}: the relay listens on plain /ws (put TLS in a proxy)`)
    return ma
  }
  const m = /^(.*):(\d+)$/.exec(addr)
  if (!m) throw new InvalidOptionError(`--listen ${addr}: expected host:port or a multiaddr`)
  const host = bracketed(m[1] || '0.0.0.0')
  const proto = ipProto(host)
  if (proto === 'dns') throw new InvalidOptionError(`--listen ${addr}: listen on an IP address, not a name`)
  return `/${proto}/${host}/tcp/${m[2]}/ws`
}

/** A multiaddr as given, or a `ws(s)://host[:port]` URL as one. */
export function announceAddr(addr: string): string {
  if (addr.startsWith('/')) return multiaddr(addr).toString()
  let url: URL
  try {
    url = new URL(addr)
  } catch {
    throw new InvalidOptionError(`--announce ${addr}: expected a multiaddr or a ws:// or wss:// URL`)
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:')
    throw new InvalidOptionError(`--announce ${addr}: expected a multiaddr or a ws:// or wss:// URL`)
  const host = bracketed(url.hostname)
  const port = url.port || (url.protocol === 'wss:' ? '443' : '80')
  return `/${ipProto(host)}/${host}/tcp/${port}/${url.protocol === 'wss:' ? 'tls/ws' : 'ws'}`
}

/** `10.0.0.0/8`, `::1`, `2001:db8::/32`: checked here so a typo fails at start, not at the first connection. */
function cidr(raw: string): string {
  const [ip = '', bits, extra] = raw.split('/')
  const v = isIP(ip)
  const max = v === 4 ? 32 : 128
  const n = bits == null ? max : Number(bits)
  if (!v || extra != null || !Number.isInteger(n) || n < 0 || n > max)
    throw new InvalidOptionError(`--exempt-ip ${raw}: expected an IP address or CIDR range`)
  return `${ip}/${n}`
}

function httpAddr(addr: string): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(addr)
  const host = bracketed(m?.[1] || '0.0.0.0')
  if (!m || ipProto(host) === 'dns') throw new InvalidOptionError(`--http ${addr}: expected IP:port`)
  return { host, port: Number(m[2]) }
}

function peerAddr(addr: string): string {
  const ma = multiaddr(addr)
  if (ma.getComponents().at(-1)?.name !== 'p2p')
    throw new InvalidOptionError(`--peer ${addr}: the address must end with /p2p/<relay PeerId>`)
  return ma.toString()
}

/** Parses argv (without node and script); `help` is true when the caller should print RELAY_HELP. */
export function parseRelayArgs(
  argv: string[],
  env: Record<string, string | undefined> = {},
): { help: true } | { help: false; config: RelayConfig } {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      listen: { type: 'string', multiple: true },
      announce: { type: 'string', multiple: true },
      'key-file': { type: 'string' },
      'addr-file': { type: 'string' },
      peer: { type: 'string', multiple: true },
      'max-reservations': { type: 'string' },
      'max-conns-per-ip': { type: 'string' },
      'exempt-ip': { type: 'string', multiple: true },
      'advert-rate': { type: 'string' },
      http: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) return { help: true }
  const hostPort = (h?: string, p?: string) =>
    h != null || p != null ? [`${h ?? '127.0.0.1'}:${p ?? 9090}`] : []
  const fromFlags = values.listen ?? hostPort(values.host, values.port)
  const fromEnv = env.RELAY_LISTEN ? list(env.RELAY_LISTEN) : hostPort(env.RELAY_HOST, env.RELAY_PORT)
  const listen = fromFlags.length ? fromFlags : fromEnv.length ? fromEnv : RELAY_DEFAULTS.listen
  const exempt = values['exempt-ip'] ?? list(env.RELAY_EXEMPT_IPS)
  const http = values.http ?? env.RELAY_HTTP
  return {
    help: false,
    config: {
      listen: listen.map(listenAddr),
      announce: (values.announce ?? list(env.RELAY_ANNOUNCE)).map(announceAddr),
      keyFile: values['key-file'] ?? env.RELAY_KEY_FILE ?? RELAY_DEFAULTS.keyFile,
      addrFile: values['addr-file'] ?? env.RELAY_ADDR_FILE ?? RELAY_DEFAULTS.addrFile,
      peers: (values.peer ?? list(env.RELAY_PEERS)).map(peerAddr),
      maxReservations: count(
        'max-reservations',
        values['max-reservations'] ?? env.RELAY_MAX_RESERVATIONS,
        RELAY_DEFAULTS.maxReservations,
      ),
      maxConnsPerIp: count(
        'max-conns-per-ip',
        values['max-conns-per-ip'] ?? env.RELAY_MAX_CONNS_PER_IP,
        RELAY_DEFAULTS.maxConnsPerIp,
      ),
      exemptIps: (exempt.length ? exempt : RELAY_DEFAULTS.exemptIps).map(cidr),
      advertRate: count(
        'advert-rate',
        values['advert-rate'] ?? env.RELAY_ADVERT_RATE,
        RELAY_DEFAULTS.advertRate,
      ),
      ...(http ? { http: httpAddr(http) } : {}),
    },
  }
}
