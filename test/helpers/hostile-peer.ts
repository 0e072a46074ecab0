/**
 * A hostile peer for e2e tests: a Node libp2p node on the same relay as the tabs, with a valid
 * identity and valid signed adverts, that links to tabs over real WebRTC and then misbehaves.
 *
 * @example
 * const h = await startHostilePeer({ relay: swarm.relay.multiaddrs[0]!, models: [cid] })
 * h.mode = { kind: 'reject', code: 'unknown-model' }
 * await h.link(tabId)                       // direct WebRTC, both ways ready
 */
import '../../node/relay/polyfill.ts'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { gossipsub, StrictNoSign } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import type { Connection, PrivateKey, Stream } from '@libp2p/interface'
import { noise } from '@libp2p/noise'
import { peerIdFromString } from '@libp2p/peer-id'
import { webRTC } from '@libp2p/webrtc'
import { webSockets } from '@libp2p/websockets'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { WebRTC } from '@multiformats/multiaddr-matcher'
import { createLibp2p } from 'libp2p'
import catalog from '../../public/models/catalog.json' with { type: 'json' }
import { encodeResult, MAX_REQUEST_BYTES, type RejectCode } from '../../src/jobs/messages.ts'
import { nextFrame, sendFrame } from '../../src/jobs/stream-io.ts'
import { type AdvertBody, type Capabilities, openAdvert, signAdvert } from '../../src/net/advert.ts'
import { encodeFrame, type Frame } from '../../src/net/frame.ts'
import { MAX_DATA_CHANNEL_MESSAGE } from '../../src/net/node.ts'
import { mlpForward, mlpWeights } from '../../src/shared/mlp.ts'
import { ADVERT_TOPIC, JOB_PROTOCOL, SOFTWARE_VERSION } from '../../src/shared/protocol.ts'
import type { NamedTensors } from '../../src/shared/tensor.ts'
import { tensorsCid } from '../../src/shared/tensor-codec.ts'
import { msToUs, signReceipt } from '../../src/trust/receipt.ts'
import { checkJobRequest } from './job-wire.ts'

/** A gossipsub RPC as `sendRpc` (internal to @libp2p/gossipsub 17) takes it. */
interface GossipRpc {
  subscriptions: { subscribe?: boolean; topic?: string }[]
  messages: { topic: string; data: Uint8Array }[]
}

/** How the peer answers jobs; read at every job, so a test can switch it live. */
export type HostileMode =
  /** Computes mlp-tiny with the JS reference and signs a correct receipt (after `delayMs`). */
  | { kind: 'honest'; delayMs?: number }
  /** A well-formed reject with this code. */
  | { kind: 'reject'; code: RejectCode; reason?: string }
  /** A well-typed reject whose reason is `bytes` long (sent as one frame, no size limit). */
  | { kind: 'huge-reject'; code?: RejectCode; bytes: number }
  /** A reject frame of a wrong shape; cycles through MALFORMED_REJECTS. */
  | { kind: 'malformed-reject' }
  /** Reads the job and never answers. */
  | { kind: 'hang' }

/** Reject frames no validator should accept as they are (their reasons are 1 MB or oddly typed). */
export const MALFORMED_REJECTS: Frame[] = [
  { t: 'reject', v: 1, code: 'no-such-code', reason: 'unknown code' },
  { t: 'reject', v: 1, code: 'bad-request', reason: new Uint8Array(1 << 20) },
  { t: 'reject', v: 1, code: 'bad-request', reason: 'y'.repeat(1 << 20), extra: true },
  { t: 'reject', v: 2, code: 42, reason: { nested: ['x'.repeat(1 << 16)] } },
  { t: 'reject', v: 1 },
  { t: 'reject', v: 1, code: 'unknown-model', reason: '\u0000\u202e'.repeat(4096) },
]

export interface SeenJob {
  at: number
  requester: string
  mode: HostileMode['kind']
  /** Jobs from this requester the peer held when this one arrived, this one included. */
  held: number
  /** Results the peer had sent this requester before this job arrived. */
  answered: number
}

export interface HostileOptions {
  relay: string
  /** Model CIDs claimed as cached (default: the whole catalog). */
  models?: string[]
  claims?: Partial<Capabilities>
  mode?: HostileMode
  /** Republish the advert this often (default 2 s), so tabs keep it fresh. */
  advertEveryMs?: number
}

const tiny = catalog.find((e) => e.name === 'mlp-tiny')!
const tinyLayers = mlpWeights(tiny.mlp!)

export async function startHostilePeer(opts: HostileOptions) {
  const privateKey = await generateKeyPair('Ed25519')
  const node = await createHostileNode(privateKey)
  const self = node.peerId.toString()
  const pubsub = node.services.pubsub
  const seen: SeenJob[] = []
  const held = new Map<string, number>()
  const answered = new Map<string, number>()
  const adverts = new Map<string, AdvertBody>()
  let claims: Capabilities = {
    eps: ['wasm'],
    adapter: 'none',
    threads: 4,
    slots: 2,
    maxSlots: 2,
    contributing: true,
    models: opts.models ?? catalog.map((e) => e.cid),
    benchUs: 0,
    version: SOFTWARE_VERSION,
    ort: '1.30.0+wasm',
    ...opts.claims,
  }
  let seq = 0

  const peer = {
    node,
    id: self,
    privateKey,
    mode: opts.mode ?? ({ kind: 'honest' } as HostileMode),
    /** Every job request that reached this peer, in order. */
    seen,
    /** Tabs' adverts as this peer received them (valid ones only). */
    adverts,
    /** Our `/p2p-circuit/webrtc` addresses, once the relay reservation holds. */
    addrs: () =>
      node
        .getMultiaddrs()
        .filter((ma) => WebRTC.matches(ma))
        .map(String),
    async publish(): Promise<void> {
      const body: AdvertBody = {
        ...claims,
        v: 1,
        peer: self,
        addrs: peer.addrs(),
        seq: ++seq,
        ts: Date.now(),
      }
      await pubsub.publish(ADVERT_TOPIC, await signAdvert(body, privateKey)).catch(() => {})
    },
    /**
     * Sends arbitrary bytes as advert-topic messages to `to` alone, `perRpc` to a gossipsub RPC, past
     * our own gossipsub's checks; resolves with how many RPCs went out.
     */
    sendAdverts(to: string, msgs: Uint8Array[], perRpc = 50): number {
      const gs = pubsub as unknown as { sendRpc(id: string, rpc: GossipRpc): boolean }
      let sent = 0
      for (let i = 0; i < msgs.length; i += perRpc) {
        const messages = msgs.slice(i, i + perRpc).map((data) => ({ topic: ADVERT_TOPIC, data }))
        if (gs.sendRpc(to, { subscriptions: [], messages })) sent++
      }
      return sent
    },
    /** PeerIds our gossipsub would publish adverts to directly. */
    gossipPeers: () => pubsub.getSubscribers(ADVERT_TOPIC).map(String),
    /** Changes what the advert claims and publishes it at once. */
    async advertise(more: Partial<Capabilities>): Promise<void> {
      claims = { ...claims, ...more }
      await peer.publish()
    },
    /** The direct WebRTC connection to `tab`, if open. */
    direct: (tab: string): Connection | undefined =>
      node
        .getConnections(peerIdFromString(tab))
        .find((c) => WebRTC.matches(c.remoteAddr) && c.status === 'open'),
    /** Waits for a direct link to `tab` (dialling its advertised addresses meanwhile). */
    async link(tab: string, timeoutMs = 30_000): Promise<Connection> {
      const until = Date.now() + timeoutMs
      for (;;) {
        const c = peer.direct(tab)
        if (c) return c
        if (Date.now() > until) throw new Error(`no direct WebRTC link to ${tab} within ${timeoutMs} ms`)
        for (const addr of adverts.get(tab)?.addrs ?? []) {
          const dialled = await node
            .dial(multiaddr(addr), { signal: AbortSignal.timeout(10_000) })
            .catch(() => null)
          if (dialled && WebRTC.matches(dialled.remoteAddr)) return dialled
        }
        await new Promise((r) => setTimeout(r, 250))
      }
    },
    async stop(): Promise<void> {
      clearInterval(timer)
      await node.stop()
    },
  }

  pubsub.addEventListener('message', (evt) => {
    const msg = evt.detail
    if (msg.topic !== ADVERT_TOPIC) return
    openAdvert(msg.data).then(
      ({ body }) => {
        const prev = adverts.get(body.peer)
        if (!prev || prev.ts <= body.ts) adverts.set(body.peer, body)
      },
      () => {},
    )
  })
  pubsub.subscribe(ADVERT_TOPIC)

  await node.handle(
    JOB_PROTOCOL,
    (stream, connection) => {
      serveJobs(stream, connection).catch(() => stream.abort(new Error('hostile handler failed')))
    },
    { maxInboundStreams: 1024 },
  )

  /** Serves jobs on one stream as `peer.mode` says; after a result the stream may carry the next. */
  async function serveJobs(stream: Stream, connection: Connection): Promise<void> {
    const requester = connection.remotePeer.toString()
    for (;;) {
      const frame = await nextFrame(stream, MAX_REQUEST_BYTES, 30_000).catch(() => null)
      if (frame == null) return void stream.close().catch(() => {})
      const mode = peer.mode
      const holding = (held.get(requester) ?? 0) + 1
      const sent = answered.get(requester) ?? 0
      seen.push({ at: Date.now(), requester, mode: mode.kind, held: holding, answered: sent })
      if (mode.kind === 'hang') return
      if (mode.kind !== 'honest') {
        stream.send(encodeFrame(rejectFrame(mode, seen.length)))
        return void stream.close().catch(() => {})
      }
      held.set(requester, holding)
      try {
        await answer(stream, frame, requester, mode.delayMs)
      } finally {
        held.set(requester, (held.get(requester) ?? 1) - 1)
      }
      answered.set(requester, (answered.get(requester) ?? 0) + 1)
    }
  }

  /** Computes a job correctly and sends its result with a signed receipt, `delayMs` late. */
  async function answer(stream: Stream, frame: Frame, requester: string, delayMs?: number) {
    if (delayMs) await new Promise((r) => setTimeout(r, delayMs))
    const req = await checkJobRequest(frame)
    const started = performance.now()
    const outputs = compute(req.body.model.toString(), req.inputs)
    const receipt = await signReceipt(
      {
        v: 1,
        job: req.jobCid,
        model: req.body.model,
        input: req.body.input,
        output: await tensorsCid(outputs),
        worker: self,
        requester,
        ep: 'wasm',
        adapter: claims.adapter,
        timing: { queueUs: 0, runUs: msToUs(performance.now() - started) },
        ts: Date.now(),
      },
      privateKey,
    )
    await sendFrame(stream, encodeResult(outputs, receipt))
  }

  await node.dial(multiaddr(opts.relay), { signal: AbortSignal.timeout(10_000) })
  for (const until = Date.now() + 15_000; peer.addrs().length === 0; ) {
    if (Date.now() > until) throw new Error('the hostile peer got no relay reservation')
    await new Promise((r) => setTimeout(r, 100))
  }
  await peer.publish()
  const timer = setInterval(() => void peer.publish(), opts.advertEveryMs ?? 2000)
  return peer
}

export type HostilePeer = Awaited<ReturnType<typeof startHostilePeer>>

function rejectFrame(mode: HostileMode, n: number): Frame {
  if (mode.kind === 'reject')
    return { t: 'reject', v: 1, code: mode.code, reason: mode.reason ?? `refused (${mode.code})` }
  if (mode.kind === 'huge-reject')
    return { t: 'reject', v: 1, code: mode.code ?? 'unknown-model', reason: 'z'.repeat(mode.bytes) }
  return MALFORMED_REJECTS[n % MALFORMED_REJECTS.length]!
}

/** mlp-tiny by the JS reference (float32 outputs, within the tensor policy's tolerance of ORT's). */
function compute(model: string, inputs: NamedTensors): NamedTensors {
  const x = inputs.x?.data
  if (model !== tiny.cid || !(x instanceof Float32Array)) throw new Error(`hostile peer cannot run ${model}`)
  const y = Float32Array.from(mlpForward(tiny.mlp!, tinyLayers, x))
  return { y: { dtype: 'float32', dims: [1, y.length], data: y } }
}

/** As a tab's node (src/net/node.ts), in Node: node-datachannel stands in for the browser's WebRTC. */
function createHostileNode(privateKey: PrivateKey) {
  return createLibp2p({
    privateKey,
    addresses: { listen: ['/p2p-circuit', '/webrtc'] },
    transports: [
      webSockets(),
      webRTC({
        rtcConfiguration: { iceServers: [] },
        dataChannel: { maxMessageSize: MAX_DATA_CHANNEL_MESSAGE },
      }),
      circuitRelayTransport({ reservationCompletionTimeout: 5000 }),
    ],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionGater: { denyDialMultiaddr: () => false },
    connectionManager: { maxConnections: 200 },
    connectionMonitor: { enabled: false },
    services: {
      identify: identify(),
      pubsub: gossipsub({
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        globalSignaturePolicy: StrictNoSign,
      }),
    },
  })
}
