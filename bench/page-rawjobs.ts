/**
 * Bench page, jobs over raw RTCDataChannels: the input's bytes one way, the output's bytes back,
 * 1-thread WASM in the contributor tab's own worker. No libp2p, no signatures, no CIDs, no records:
 * what Chromium's WebRTC and onnxruntime-web in tabs allow, the physical reference for throughput.
 */
import type { NamedTensors } from '../src/shared/tensor.ts'
import { rawChannel } from './page-transport.ts'

type RunBytes = (input: Uint8Array) => Promise<Uint8Array>

/** A run of `inputs`' one float32 input with new data, answered as its first output's bytes. */
export function bytesRunner(inputs: NamedTensors, run: (i: NamedTensors) => Promise<NamedTensors>): RunBytes {
  const [name, spec] = Object.entries(inputs)[0]!
  return async (bytes) => {
    const data = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4)
    const out = Object.values(await run({ [name]: { ...spec, data } }))[0]!
    const d = out.data as ArrayBufferView
    return new Uint8Array(d.buffer, d.byteOffset, d.byteLength)
  }
}

/**
 * Contributor side: one job per binary message. Each run is posted to the worker at once (its queue
 * holds the next job while one runs, as for a swarm contributor's second slot); answers go in order.
 */
export function serveRawJobs(run: RunBytes): (dc: RTCDataChannel) => void {
  return (dc) => {
    dc.binaryType = 'arraybuffer'
    let prev: Promise<void> = Promise.resolve()
    dc.onmessage = (e) => {
      const out = run(new Uint8Array(e.data as ArrayBuffer))
      out.catch(() => {}) // answered below, in turn
      prev = prev
        .then(() => out)
        .then(
          (bytes) => dc.send(bytes as Uint8Array<ArrayBuffer>),
          (err: Error) => dc.send(`error: ${err.message}`),
        )
    }
  }
}

/**
 * Requester side: `n` jobs over the channels, `depth` outstanding per channel (a contributor's
 * slots: the swarm's contributors take 2 jobs at once, the second waiting in the worker's queue);
 * wall ms and jobs per channel.
 */
export async function rawJobBatch(channels: string[], input: Uint8Array, n: number, depth: number) {
  let left = n
  let outBytes: number | undefined
  const t0 = performance.now()
  const lanes = channels.map((id) => {
    const dc = rawChannel(id)
    dc.binaryType = 'arraybuffer'
    const waiting: ((data: unknown) => void)[] = [] // answers come in order: FIFO
    dc.onmessage = (e) => waiting.shift()?.(e.data)
    dc.onclose = () => {
      for (const w of waiting.splice(0)) w('channel closed')
    }
    let done = 0
    const lane = async () => {
      while (left-- > 0) {
        const answer = new Promise<unknown>((ok) => waiting.push(ok))
        dc.send(input as Uint8Array<ArrayBuffer>)
        const got = await answer
        outBytes ??= got instanceof ArrayBuffer ? got.byteLength : undefined
        if (!(got instanceof ArrayBuffer) || got.byteLength !== outBytes || !outBytes) {
          left = 0 // the other lanes stop too
          throw new Error(`raw job on ${id}: ${typeof got === 'string' ? got : 'wrong output size'}`)
        }
        done++
      }
    }
    return { lanes: Array.from({ length: depth }, lane), done: () => done }
  })
  await Promise.all(lanes.flatMap((l) => l.lanes))
  return { ms: performance.now() - t0, byChannel: lanes.map((l) => l.done()) }
}
