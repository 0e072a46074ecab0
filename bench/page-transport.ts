/**
 * Bench page, transport: bulk bytes and small echoes over a libp2p stream on the direct WebRTC
 * connection, and over a raw RTCDataChannel between the same two tabs (SDP passed by the driver).
 */
import type { Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { sendBytes } from '../src/models/stream.ts'
import { type BrowserNode, directConnection } from '../src/net/node.ts'

export const SINK_PROTOCOL = '/peer-compute-bench/sink/1.0.0'
export const ECHO_PROTOCOL = '/peer-compute-bench/echo/1.0.0'

/** Sink counts bytes until the sender closes, then answers the count; echo returns every chunk. */
export async function registerBenchProtocols(node: BrowserNode): Promise<void> {
  await node.handle(SINK_PROTOCOL, async (stream) => {
    let n = 0
    for await (const chunk of stream) n += chunk.byteLength
    stream.send(new TextEncoder().encode(String(n)))
    await stream.close()
  })
  await node.handle(ECHO_PROTOCOL, async (stream) => {
    for await (const chunk of stream) await sendBytes(stream, chunk.subarray())
    await stream.close()
  })
}

const MiB = 1024 * 1024

/** getRandomValues fills at most 64 KiB per call. */
function randomBytes(n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, i + 65536))
  return out
}

function conn(node: BrowserNode, target: string) {
  const c = directConnection(node, peerIdFromString(target))
  if (!c) throw new Error(`no direct connection to ${target}`)
  return c
}

async function readAll(stream: Stream): Promise<string> {
  let s = ''
  for await (const chunk of stream) s += new TextDecoder().decode(chunk.subarray())
  return s
}

/**
 * Sends `total` bytes in `msg`-byte writes with backpressure; ms until the sink confirmed them all.
 * Waits for `drain` events (`sendBytes`), not `onDrain()`, which stops waiting after the first drain.
 */
export async function p2pSend(node: BrowserNode, target: string, total: number, msg: number) {
  const stream = await conn(node, target).newStream(SINK_PROTOCOL)
  const buf = randomBytes(msg)
  const t0 = performance.now()
  for (let sent = 0; sent < total; sent += msg) await sendBytes(stream, buf)
  await stream.close()
  const got = Number(await readAll(stream))
  const ms = performance.now() - t0
  if (got !== Math.ceil(total / msg) * msg) throw new Error(`sink got ${got} bytes`)
  return { ms, bytes: got }
}

/** Round trips of 32 bytes: on one reused stream, and on a new stream each (the job protocol's pattern). */
export async function p2pEcho(node: BrowserNode, target: string, n: number, size = 32) {
  const c = conn(node, target)
  const ping = new Uint8Array(size)
  const reused: number[] = []
  const fresh: number[] = []
  const stream = await c.newStream(ECHO_PROTOCOL)
  const it = stream[Symbol.asyncIterator]()
  for (let i = 0; i < n; i++) {
    const t0 = performance.now()
    stream.send(ping)
    let got = 0
    while (got < size) got += ((await it.next()).value as { byteLength: number }).byteLength
    reused.push(performance.now() - t0)
  }
  await stream.close()
  for (let i = 0; i < n; i++) {
    const t0 = performance.now()
    const s = await c.newStream(ECHO_PROTOCOL)
    s.send(ping)
    await s[Symbol.asyncIterator]().next()
    fresh.push(performance.now() - t0)
    await s.close()
  }
  return { reused, fresh }
}

interface Raw {
  pc: RTCPeerConnection
  dc?: RTCDataChannel
}
const raws = new Map<string, Raw>()

async function gathered(pc: RTCPeerConnection): Promise<string> {
  if (pc.iceGatheringState !== 'complete') {
    await new Promise<void>((ok) =>
      pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && ok()),
    )
  }
  return pc.localDescription!.sdp
}

/** Receiver side: counts bytes, answers `ok:<n>` to 'end', echoes strings starting with 'ping'. */
function serveChannel(dc: RTCDataChannel): void {
  dc.binaryType = 'arraybuffer'
  let n = 0
  dc.onmessage = (e) => {
    if (typeof e.data !== 'string') n += (e.data as ArrayBuffer).byteLength
    else if (e.data === 'end') {
      dc.send(`ok:${n}`)
      n = 0
    } else dc.send(e.data)
  }
}

export async function rawOffer(id: string): Promise<string> {
  const pc = new RTCPeerConnection({ iceServers: [] })
  const dc = pc.createDataChannel('bench', { ordered: true })
  dc.binaryType = 'arraybuffer'
  raws.set(id, { pc, dc })
  await pc.setLocalDescription(await pc.createOffer())
  return gathered(pc)
}

/** Answers `offer`; the offered channel is served by `serve` (default: count bytes and echo). */
export async function rawAnswer(
  id: string,
  offer: string,
  serve: (dc: RTCDataChannel) => void = serveChannel,
): Promise<string> {
  const pc = new RTCPeerConnection({ iceServers: [] })
  pc.ondatachannel = (e) => serve(e.channel)
  raws.set(id, { pc })
  await pc.setRemoteDescription({ type: 'offer', sdp: offer })
  await pc.setLocalDescription(await pc.createAnswer())
  return gathered(pc)
}

export async function rawConnect(id: string, answer: string): Promise<void> {
  const { pc, dc } = raws.get(id)!
  await pc.setRemoteDescription({ type: 'answer', sdp: answer })
  if (dc!.readyState !== 'open') await new Promise((ok) => dc!.addEventListener('open', ok, { once: true }))
}

const nextMessage = (dc: RTCDataChannel) =>
  new Promise<string>((ok) => dc.addEventListener('message', (e) => ok(String(e.data)), { once: true }))

/**
 * Same shape as p2pSend: ms until the peer confirmed the bytes. Keeps up to `high` bytes queued (the
 * libp2p stream allows 2 MiB) and refills below `low`, so the raw side never waits on an empty queue.
 */
export async function rawSend(id: string, total: number, msg: number, high = 4 * MiB, low = MiB) {
  const dc = raws.get(id)!.dc!
  const buf = randomBytes(msg)
  dc.bufferedAmountLowThreshold = low
  const t0 = performance.now()
  for (let sent = 0; sent < total; sent += msg) {
    if (dc.bufferedAmount > high) {
      await new Promise((ok) => dc.addEventListener('bufferedamountlow', ok, { once: true }))
    }
    dc.send(buf)
  }
  const ack = nextMessage(dc)
  dc.send('end')
  const got = Number((await ack).slice(3))
  const t1 = performance.now()
  if (got !== Math.ceil(total / msg) * msg) throw new Error(`raw peer got ${got} bytes`)
  // Absolute start and end (ms since the epoch), to time sends from two tabs at once on one clock.
  return { ms: t1 - t0, bytes: got, start: performance.timeOrigin + t0, end: performance.timeOrigin + t1 }
}

/** Round trips of `size` bytes, back to back or `gapMs` apart (a dispatch job leaves the channel idle that long). */
export async function rawEcho(id: string, n: number, size = 32, gapMs = 0): Promise<number[]> {
  const dc = raws.get(id)!.dc!
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    if (gapMs) await new Promise((r) => setTimeout(r, gapMs))
    const t0 = performance.now()
    const pong = nextMessage(dc)
    dc.send(size === 32 ? 'ping-0123456789abcdef0123456789a' : 'p'.repeat(size))
    await pong
    out.push(performance.now() - t0)
  }
  return out
}

/** The offering side's open channel `id` (rawOffer + rawConnect). */
export function rawChannel(id: string): RTCDataChannel {
  const dc = raws.get(id)?.dc
  if (dc?.readyState !== 'open') throw new Error(`raw channel ${id} is not open`)
  return dc
}

export function rawClose(id: string): void {
  raws.get(id)?.pc.close()
  raws.delete(id)
}
