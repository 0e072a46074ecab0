import './polyfill.ts'
import { BlockList, isIP } from 'node:net'
import { circuitRelayServer } from '@libp2p/circuit-relay-v2'
import { gossipsub, StrictNoSign, type TopicValidatorFn, TopicValidatorResult } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import type { Connection, PeerId, PrivateKey } from '@libp2p/interface'
import { noise } from '@libp2p/noise'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { webSockets } from '@libp2p/websockets'
import { yamux } from '@libp2p/yamux'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p } from 'libp2p'
import { openAdvert } from '../../src/net/advert.ts'
import { ADVERT_TOPIC } from '../../src/shared/protocol.ts'
import { type AdvertGate, createAdvertGate } from './advert-gate.ts'
import { type AdvertStore, createAdvertStore, serveAdvertSnapshots } from './advert-store.ts'
import { RELAY_DEFAULTS } from './config.ts'

export interface RelayOptions {
  privateKey: PrivateKey
  /** `/ws` multiaddrs; default one free port on 127.0.0.1. */
  listen?: string[]
  /** Advertised instead of the listen addresses (a TLS proxy's `/dns4/…/tcp/443/wss`). */
  announce?: string[]
  /** Other relays, each ending `/p2p/<id>`: dialled, redialled while down, and sent every advert. */
  peers?: string[]
  maxReservations?: number
  maxConnsPerIp?: number
  /** CIDRs free of maxConnsPerIp; default loopback (a reverse proxy on this host). */
  exemptIps?: string[]
  /** Adverts per minute forwarded per advertising peer. */
  advertRate?: number
  log?: (line: string) => void
}

export interface Relay {
  node: Libp2p
  /** The announced (else listen) addresses, each with `/p2p/<id>`: what peer-compute.json lists. */
  multiaddrs: string[]
  stop(): Promise<void>
}

/** Redial a peer relay at most this often while it is down (doubling from 1 s). */
const MAX_PEER_BACKOFF_MS = 30_000

const ipOf = (ma: Multiaddr) => ma.getComponents().find((c) => c.name === 'ip4' || c.name === 'ip6')?.value

/** At most one line per 10 s per kind: a flood must not flood the log too. */
function quietLog(log: (line: string) => void) {
  const last = new Map<string, { at: number; unlogged: number }>()
  return (kind: string, line: string) => {
    const s = last.get(kind) ?? { at: Number.NEGATIVE_INFINITY, unlogged: 0 }
    last.set(kind, s)
    if (Date.now() - s.at < 10_000) {
      s.unlogged++
      return
    }
    log(`${line}${s.unlogged ? ` (and ${s.unlogged} more since the last line)` : ''}`)
    s.at = Date.now()
    s.unlogged = 0
  }
}

/**
 * A circuit-relay-v2 server and gossipsub hub for browser peers. It carries WebRTC signalling
 * and adverts only: it subscribes to the advert topic so it can forward them, and registers no
 * job or model protocol, so job payloads cannot pass through it. Circuit-relay-v2's default
 * per-circuit limits (2 min, 128 KiB) stay: enough for signalling, useless for bulk traffic.
 * It forwards only adverts that open (size, shape, and the signature of the peer they name), and
 * of those at most `advertRate` a minute per advertising peer; no peer scoring is configured.
 */
export async function createRelay(opts: RelayOptions): Promise<Relay> {
  const log = opts.log ?? (() => {})
  const quiet = quietLog(log)
  const maxReservations = opts.maxReservations ?? RELAY_DEFAULTS.maxReservations
  const maxPerIp = opts.maxConnsPerIp ?? RELAY_DEFAULTS.maxConnsPerIp
  const exempt = blockListOf(opts.exemptIps ?? RELAY_DEFAULTS.exemptIps)
  const peers = (opts.peers ?? []).map((a) => {
    const ma = multiaddr(a)
    return { ma, id: peerIdFromString(ma.getComponents().at(-1)?.value ?? '') }
  })
  const self = peerIdFromPrivateKey(opts.privateKey)
  const others = peers.filter((p) => !p.id.equals(self)) // one shared --peer list may name us
  let connections: () => Connection[] = () => []
  const node = await createLibp2p({
    privateKey: opts.privateKey,
    addresses: {
      listen: opts.listen ?? ['/ip4/127.0.0.1/tcp/0/ws'],
      ...(opts.announce?.length ? { announce: opts.announce } : {}),
    },
    transports: [webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // Room beyond the reservations for tabs that only pass through to signal, and for peer relays.
    connectionManager: { maxConnections: maxReservations + 256 },
    connectionGater: {
      // libp2p has no per-IP connection cap (only a per-IP rate), so count open connections here.
      denyInboundConnection: (maConn) => {
        const ip = ipOf(maConn.remoteAddr)
        if (ip == null || exempt.check(ip, isIP(ip) === 6 ? 'ipv6' : 'ipv4')) return false
        const open = connections().filter((c) => ipOf(c.remoteAddr) === ip).length
        if (open < maxPerIp) return false
        quiet('per-ip', `refused a connection from ${ip}: ${open} open, --max-conns-per-ip ${maxPerIp}`)
        return true
      },
    },
    services: {
      identify: identify(),
      relay: circuitRelayServer({ reservations: { maxReservations } }),
      pubsub: gossipsub({
        allowPublishToZeroTopicPeers: true,
        D: 8,
        Dlo: 4,
        Dhi: 16,
        globalSignaturePolicy: StrictNoSign, // as the tabs: adverts carry their own signature
        // Tabs behind one NAT or proxy share an IP, and gossipsub counts each one seen in the last
        // hour: past 10 its default scoring shut every such tab out of the mesh and its gossip.
        scoreParams: { IPColocationFactorWeight: 0 },
        // Peer relays get every advert, outside the mesh, whatever its size.
        directPeers: others.map((p) => ({ id: p.id, addrs: [p.ma] })),
      }),
    },
  })
  connections = () => node.getConnections()
  node.addEventListener('peer:connect', (e) => log(`connect ${e.detail.toString()}`))
  node.addEventListener('peer:disconnect', (e) => log(`disconnect ${e.detail.toString()}`))

  const gate = createAdvertGate({ perMinute: opts.advertRate ?? RELAY_DEFAULTS.advertRate })
  const pubsub = node.services.pubsub
  const store = createAdvertStore()
  pubsub.topicValidators.set(ADVERT_TOPIC, advertValidator(gate, store, quiet))
  pubsub.subscribe(ADVERT_TOPIC)
  await serveAdvertSnapshots(node, store)
  await node.start()

  const peering = keepPeered(node, others, log)
  return {
    node,
    multiaddrs: node.getMultiaddrs().map((ma) => ma.toString()),
    stop: async () => {
      peering.stop()
      gate.stop()
      await node.stop()
    },
  }
}

/** The subnets of `cidrs` (a bare address is a /32 or /128). */
function blockListOf(cidrs: string[]): BlockList {
  const list = new BlockList()
  for (const c of cidrs) {
    const [ip = '', bits] = c.split('/')
    const type = isIP(ip) === 6 ? 'ipv6' : 'ipv4'
    list.addSubnet(ip, Number(bits ?? (type === 'ipv6' ? 128 : 32)), type)
  }
  return list
}

/** Forwards adverts that open, at most the gate's rate per advertising peer, and keeps the latest. */
function advertValidator(
  gate: AdvertGate,
  store: AdvertStore,
  quiet: ReturnType<typeof quietLog>,
): TopicValidatorFn {
  return async (peer, msg) => {
    let advert: Awaited<ReturnType<typeof openAdvert>>
    try {
      advert = await openAdvert(msg.data)
    } catch (err) {
      const e = err as Error
      quiet(
        'invalid',
        `refused an advert from ${peer}: ${JSON.stringify(`${e.name}: ${e.message}`.slice(0, 200))}`,
      )
      return TopicValidatorResult.Reject
    }
    const { peer: from, ts, seq } = advert.body
    if ((await gate.admit(from, [ts, seq])) === 'accept') {
      store.put(from, msg.data, [ts, seq])
      return TopicValidatorResult.Accept
    }
    quiet('rate', `dropped adverts over --advert-rate (${gate.dropped} so far), the latest from ${from}`)
    return TopicValidatorResult.Ignore
  }
}

/** Keeps a connection to every peer relay: dials at start, then redials with backoff while down. */
function keepPeered(node: Libp2p, peers: { ma: Multiaddr; id: PeerId }[], log: (line: string) => void) {
  const state = new Map(
    peers.map((p) => [p.id.toString(), { ...p, backoff: 1000, nextAt: 0, dialing: false }]),
  )
  const tick = () => {
    for (const p of state.values()) {
      if (p.dialing || Date.now() < p.nextAt || node.getConnections(p.id).length > 0) continue
      p.dialing = true
      node
        .dial(p.ma, { signal: AbortSignal.timeout(10_000) })
        .then(
          () => {
            log(`peered with relay ${p.ma}`)
            p.backoff = 1000
          },
          (err: Error) => {
            if (p.backoff === 1000) log(`relay ${p.ma} unreachable (${err.message}); retrying`)
            p.nextAt = Date.now() + p.backoff
            p.backoff = Math.min(MAX_PEER_BACKOFF_MS, p.backoff * 2)
          },
        )
        .finally(() => {
          p.dialing = false
        })
    }
  }
  const onDisconnect = (e: CustomEvent<PeerId>) => {
    const p = state.get(e.detail.toString())
    if (p == null) return
    log(`lost peer relay ${p.ma}`)
    p.nextAt = Date.now() + 1000 // a restarting relay needs a moment to listen again
  }
  node.addEventListener('peer:disconnect', onDisconnect)
  tick()
  const timer = setInterval(tick, 500)
  return {
    stop() {
      clearInterval(timer)
      node.removeEventListener('peer:disconnect', onDisconnect)
    },
  }
}
