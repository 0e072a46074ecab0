/**
 * A child process of the scale bench (bench/scale.ts): K Node contributor peers (node/peer.ts) in one
 * process, on the relays given, reporting over IPC. Started with `fork(…, { execArgv: ['--import', 'tsx'] })`:
 * argv `<dir> <k> <relay,relay> [maxLinks]`. Sends `{ type: 'ready', ids }` once every peer holds a relay
 * address, answers `'stats'` with a PeersStats, and on `'stop'` (or the parent gone) stops every peer,
 * removes `dir` (the peers' data directories) and exits. The parent removes `dir` too, should this die.
 */
import './url-imports.ts'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'

export interface PeerStats {
  id: string
  /** Direct WebRTC links, and of them those this peer dialled. */
  links: number
  outbound: number
  /** Peers whose advert it holds. */
  known: number
  /** Connections to the relays (one each expected). */
  relayConns: number
  /** Gossipsub deliveries on the advert topic (after gossipsub's de-duplication), since start. */
  adverts: number
  advertBytes: number
  /** Jobs it has served since start. */
  served: number
}

export interface PeersStats {
  type: 'stats'
  pid: number
  /** Cumulative CPU ms of this process (user + system) and its RSS now. */
  cpuMs: number
  rssBytes: number
  peers: PeerStats[]
  errors: string[]
}

export type FromPeers =
  | { type: 'ready'; ids: string[]; ms: number }
  | { type: 'progress'; started: number; reserved: number }
  | PeersStats
  | { type: 'failed'; error: string }

// Vite defines this build flag for the app and Vitest; under tsx it must exist before node/peer.ts loads.
;(globalThis as { __PC_TEST_HOOKS__?: boolean }).__PC_TEST_HOOKS__ = false
const { createNodePeer } = await import('../node/peer.ts')
const { isDirect } = await import('../src/net/link.ts')
const { ADVERT_TOPIC } = await import('../src/shared/protocol.ts')
type NodePeer = Awaited<ReturnType<typeof createNodePeer>>

const [root = '', kArg, relayArg = '', linksArg] = process.argv.slice(2)
const k = Number(kArg)
const relays = relayArg.split(',').filter(Boolean)
const maxLinks = linksArg ? Number(linksArg) : undefined
const relayIds = relays.map((r) => peerIdFromString(r.split('/p2p/').pop() ?? ''))
/**
 * Peers started at once. Every peer re-advertises when it sees a new one (debounced 50 ms), so a
 * process's peers join together: one round of adverts per batch rather than per peer.
 */
const START_BATCH = 25

const send = (m: FromPeers) => process.send?.(m)
const peers: NodePeer[] = []
const counts = new Map<NodePeer, { adverts: number; bytes: number; served: number }>()
const errors: string[] = []
let stopping: Promise<void> | undefined

async function startOne(i: number): Promise<NodePeer> {
  const peer = await createNodePeer({
    dir: join(root, `p${i}`),
    relays,
    iceServers: [], // loopback: host candidates suffice, and no config file is fetched
    contribute: true,
    maxSlots: 2,
    threads: 1,
    ...(maxLinks ? { maxLinks } : {}),
  })
  const c = { adverts: 0, bytes: 0, served: 0 }
  counts.set(peer, c)
  peer.node.services.pubsub.addEventListener('message', (e) => {
    if (e.detail.topic !== ADVERT_TOPIC) return
    c.adverts++
    c.bytes += e.detail.data.byteLength
  })
  peer.controls.events.addEventListener('job-done', () => c.served++)
  return peer
}

function stats(): PeersStats {
  const cpu = process.cpuUsage()
  return {
    type: 'stats',
    pid: process.pid,
    cpuMs: (cpu.user + cpu.system) / 1000,
    rssBytes: process.memoryUsage.rss(),
    peers: peers.map((p) => {
      const direct = p.node.getConnections().filter(isDirect)
      const c = counts.get(p)!
      return {
        id: p.id,
        links: direct.length,
        outbound: direct.filter((d) => d.direction === 'outbound').length,
        known: p.peers().length,
        relayConns: relayIds.reduce((n, r) => n + p.node.getConnections(r).length, 0),
        adverts: c.adverts,
        advertBytes: c.bytes,
        served: c.served,
      }
    }),
    errors: errors.splice(0),
  }
}

function stop(): Promise<void> {
  stopping ??= (async () => {
    // Each stop is bounded: a peer that hangs must not keep the data directories on disk.
    const bounded = (p: NodePeer) =>
      Promise.race([p.stop(), new Promise((r) => setTimeout(r, 5000))]).catch(() => {})
    await Promise.all(peers.map(bounded))
    await rm(root, { recursive: true, force: true })
  })()
  return stopping
}

const exit = (code: number) => void stop().finally(() => process.exit(code))
process.on('message', (m) => {
  if (m === 'stats') send(stats())
  else if (m === 'stop') exit(0)
})
process.on('disconnect', () => exit(0)) // the bench is gone: leave nothing behind
process.once('SIGTERM', () => exit(0))
process.once('SIGINT', () => exit(0))
// A peer's stray rejection (a dial aborted at stop, say) is reported, not fatal to the other K − 1.
process.on('unhandledRejection', (err) => errors.push(String((err as Error)?.stack ?? err).slice(0, 300)))

const t0 = performance.now()
/** Peers holding a relay reservation: their adverts name an address to dial. */
const reserved = () => peers.filter((p) => p.status().webrtcAddrs.length > 0).length
try {
  for (let i = 0; i < k; i += START_BATCH) {
    const batch = Array.from({ length: Math.min(START_BATCH, k - i) }, (_, j) => startOne(i + j))
    const started = await Promise.allSettled(batch)
    for (const s of started) if (s.status === 'fulfilled') peers.push(s.value)
    send({ type: 'progress', started: peers.length, reserved: reserved() })
    const failed = started.find((s) => s.status === 'rejected')
    if (failed) throw (failed as PromiseRejectedResult).reason
  }
  // Ready once every peer can be dialled: it holds a reservation, so its advert names an address.
  while (reserved() < peers.length) {
    await new Promise((r) => setTimeout(r, 1000))
    send({ type: 'progress', started: peers.length, reserved: reserved() })
  }
  send({ type: 'ready', ids: peers.map((p) => p.id), ms: performance.now() - t0 })
} catch (err) {
  send({ type: 'failed', error: String((err as Error)?.stack ?? err).slice(0, 1000) })
  exit(1)
}
