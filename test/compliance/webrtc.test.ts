/**
 * Runs the `/peer-compute/job/1.1.0` compliance suite over real WebRTC: Node libp2p peers (the
 * browser node, node-datachannel underneath) signalled through in-process relays on loopback.
 *
 * The peers and their links are made once per file; each setup() gets a fresh handler, admission
 * and engine behind them, as the in-memory harness does, and teardown resets every job stream.
 * The rogue peer shares the contributor's identity, so it sits behind a second relay and is
 * reached by a second node holding the requester's identity.
 */
import '../../node/polyfills.ts'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Connection, Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, expect, vi } from 'vitest'
import { createRelay, type Relay } from '../../node/relay/relay.ts'
import {
  type BrowserNode,
  connectRelays,
  createBrowserNode,
  isDirect,
  webrtcAddrs,
} from '../../src/net/node.ts'
import type { RelayKeeper } from '../../src/net/relays.ts'
import { JOB_PROTOCOL } from '../../src/shared/protocol.ts'
import { generateIdentity, peerIdOf } from '../../src/trust/keys.ts'
import { contributorUnderTest, type Harness, IDLE_MS, type PeerKeys, SLOTS } from './harness.ts'
import { tests } from './job-protocol.ts'

const WAIT = { timeout: 15_000, interval: 50 }
/**
 * Dials tried per link. libdatachannel fails a loopback handshake now and then (DTLS "unknown CA":
 * the answerer's certificate arrives before the offerer has applied the answer); the dial then
 * times out. The link is this harness's fixture, not what the suite tests, so it is dialled again.
 */
const DIALS = 3

interface Peer {
  node: BrowserNode
  keeper: RelayKeeper
}

/** Requester side (`asker`) of a direct WebRTC link to `server`, dialled through `server`'s relay. */
interface Link {
  asker: Peer
  server: Peer
  connection: Connection
}

interface World {
  relays: Relay[]
  requester: PeerKeys
  contributor: PeerKeys
  honest: Link
  /** Started by the first rogue() call. */
  rogue?: Promise<Link>
}

// One harness is live at a time (the suite runs its cases in turn): these route to the current one.
let serveJob: (stream: Stream, connection: Connection) => void = (s) => s.abort(new Error('no harness'))
let serveRogue: (stream: Stream) => Promise<void> = async () => {}

let world: Promise<World> | undefined
const started: Promise<Peer | Relay>[] = []

afterAll(async () => {
  const all = await Promise.allSettled(started)
  const up = all.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
  // Peers before relays, so no peer is left redialling a relay that went.
  await Promise.allSettled(up.filter((p): p is Peer => 'keeper' in p).map(stopPeer))
  await Promise.allSettled(up.filter((r): r is Relay => !('keeper' in r)).map((r) => r.stop()))
})

function track<T extends Peer | Relay>(p: Promise<T>): Promise<T> {
  started.push(p)
  return p
}

async function keys(): Promise<PeerKeys> {
  const privateKey = await generateIdentity()
  return { privateKey, id: peerIdOf(privateKey) }
}

async function startRelay(): Promise<Relay> {
  return createRelay({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0/ws'] })
}

/** A node with a reservation on `relay`, and so a `/p2p-circuit/webrtc` address there. */
async function peerOn(relay: Relay, who: PeerKeys): Promise<Peer> {
  const node = await createBrowserNode({ privateKey: who.privateKey, relays: [], iceServers: [] })
  const keeper = connectRelays(node, [relay.multiaddrs[0]!])
  const peer = { node, keeper }
  await keeper.ready.catch(async (err) => {
    await stopPeer(peer)
    throw err
  })
  return peer
}

async function stopPeer(p: Peer): Promise<void> {
  p.keeper.stop()
  await p.node.stop()
}

async function dialDirect(asker: Peer, server: Peer): Promise<Connection> {
  const addr = await vi.waitFor(() => {
    const a = webrtcAddrs(server.node)[0]
    if (a == null) throw new Error(`${server.node.peerId} has no /p2p-circuit/webrtc address yet`)
    return a
  }, WAIT)
  const conn = await asker.node.dial(multiaddr(addr), { signal: AbortSignal.timeout(WAIT.timeout) })
  // libp2p may hand the connection over before ICE has connected (src/net/link.ts).
  await vi.waitFor(() => expect(isDirect(conn), `${conn.remoteAddr} ${conn.status}`).toBe(true), WAIT)
  return conn
}

async function link(asker: Peer, server: Peer): Promise<Link> {
  for (let i = 1; ; i++) {
    try {
      return { asker, server, connection: await dialDirect(asker, server) }
    } catch (err) {
      if (i >= DIALS) throw err
      await Promise.all(asker.node.getConnections(server.node.peerId).map((c) => c.close().catch(() => {})))
    }
  }
}

/** The same link, dialled again if it is no longer direct. */
async function kept(l: Link): Promise<Link> {
  return isDirect(l.connection) ? l : link(l.asker, l.server)
}

async function startWorld(): Promise<World> {
  const relays = await Promise.all([track(startRelay()), track(startRelay())])
  const [requester, contributor] = await Promise.all([keys(), keys()])
  const [asker, server] = await Promise.all([
    track(peerOn(relays[0]!, requester)),
    track(peerOn(relays[0]!, contributor)),
  ])
  await server.node.handle(JOB_PROTOCOL, (s, c) => serveJob(s, c), { maxInboundStreams: 64 })
  return { relays, requester, contributor, honest: await link(asker, server) }
}

async function startRogue(w: World): Promise<Link> {
  const [asker, rogue] = await Promise.all([
    track(peerOn(w.relays[1]!, w.requester)),
    track(peerOn(w.relays[1]!, w.contributor)),
  ])
  await rogue.node.handle(
    JOB_PROTOCOL,
    (s) => {
      serveRogue(s).catch((err) => s.abort(err as Error))
    },
    { maxInboundStreams: 64 },
  )
  return link(asker, rogue)
}

/** Job streams still open on any of the world's peers. */
async function openJobStreams(w: World): Promise<Stream[]> {
  const rogue = await w.rogue?.catch(() => undefined)
  return [w.honest, ...(rogue ? [rogue] : [])]
    .flatMap((l) => [l.asker, l.server])
    .flatMap((p) => p.node.getConnections())
    .flatMap((c) => c.streams)
    .filter((s) => s.protocol === JOB_PROTOCOL)
}

tests({
  async setup() {
    world ??= startWorld()
    const w = await world
    w.honest = await kept(w.honest)
    // A rogue link that failed stays failed: its cases fail on it, the others go on.
    const rogue = await w.rogue?.catch(() => undefined)
    if (rogue) w.rogue = kept(rogue)
    const { admission, engine, job, model, unknownModel } = await contributorUnderTest(w.contributor)
    serveJob = job.handler
    serveRogue = async () => {}
    return {
      requester: w.requester,
      contributor: w.contributor,
      connection: w.honest.connection,
      // One rogue link for the file: streams opened after a call go to that call's `serve`.
      async rogue(serve) {
        serveRogue = serve
        w.rogue ??= startRogue(w)
        return (await w.rogue).connection
      },
      model: model,
      unknownModel: unknownModel,
      idleStreamMs: IDLE_MS,
      slots: SLOTS,
      setContributing: async (on) => admission.setContributing(on),
      freeSlots: async () => admission.free,
      engine,
    } satisfies Harness
  },
  async teardown() {
    const w = await world?.catch(() => undefined) // a world that failed to start failed its setup()
    if (w == null) return
    for (const s of await openJobStreams(w)) s.abort(new Error('test over'))
    // Both ends gone before the next case, so no stream of this one counts against its limits.
    await vi.waitFor(async () => expect(await openJobStreams(w)).toHaveLength(0), WAIT)
  },
})
