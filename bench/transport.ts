/**
 * 3. Transport between the same two tabs: bulk bytes over one libp2p stream on the direct WebRTC
 * connection vs a raw RTCDataChannel (SDP passed through this driver), and 32-byte round trips.
 */
import type { Page } from 'playwright-core'
import { type Dist, dist, MiB, median } from './stats.ts'

export interface TransportRow {
  msgKiB: number
  mib: number
  libp2pMiBs: number
  rawMiBs: number
  ratio: number
  reps: number
  /** libp2p / raw of each back-to-back pair, in order: how far single pairs stray on this machine. */
  pairRatios?: number[]
}

export interface EchoRow {
  /** 32-byte round trips: raw data channel, a reused libp2p stream, a new libp2p stream per message. */
  raw: Dist
  libp2pReused: Dist
  libp2pNewStream: Dist
  /** Round trips of JOB_FRAME_BYTES each way (a bench-* job and its result): the floor of dispatch. */
  frameBytes?: number
  rawFrame?: Dist
  /** The same, 12 ms apart: the channel idles between round trips, as between dispatch jobs. */
  rawFrameIdle?: Dist
  libp2pReusedFrame?: Dist
}

/** About the job and result frame of the bench-* dispatch models (16 KiB of float32 plus framing). */
export const JOB_FRAME_BYTES = 17_000

/** A raw RTCDataChannel `id` from `offerer` to the page whose side `answer` sets up (rawAnswer or a variant). */
export async function connectRaw(offerer: Page, id: string, answer: (offer: string) => Promise<string>) {
  const offer = await offerer.evaluate((i) => window.__bench.rawOffer(i), id)
  const sdp = await answer(offer)
  await offerer.evaluate((x) => window.__bench.rawConnect(x.id, x.sdp), { id, sdp })
}

export async function transportBench(
  a: Page,
  b: Page,
  bId: string,
  o: { mib: number; reps: number; sizesKiB: number[]; echoes: number },
): Promise<{ rows: TransportRow[]; echo: EchoRow }> {
  await connectRaw(a, 't', (offer) => b.evaluate((sdp) => window.__bench.rawAnswer('t', sdp), offer))
  try {
    const rows: TransportRow[] = []
    const total = o.mib * MiB
    for (const kib of o.sizesKiB) {
      const msg = kib * 1024
      const rawOnce = (n = total) => a.evaluate((x) => window.__bench.rawSend('t', x.n, x.msg), { n, msg })
      const p2pOnce = (n = total) =>
        a.evaluate((x) => window.__bench.p2pSend(x.target, x.n, x.msg), { target: bId, n, msg })
      // Warm both paths once, then alternate so machine load hits both alike.
      await rawOnce(2 * MiB)
      await p2pOnce(2 * MiB)
      const p2p: number[] = []
      const raw: number[] = []
      for (let i = 0; i < o.reps; i++) {
        // Each pair runs in the other order from the last, so neither side always follows the other.
        const first = i % 2 ? await p2pOnce() : await rawOnce()
        const second = i % 2 ? await rawOnce() : await p2pOnce()
        const [r, p] = i % 2 ? [second, first] : [first, second]
        raw.push(r.bytes / MiB / (r.ms / 1000))
        p2p.push(p.bytes / MiB / (p.ms / 1000))
      }
      const [libp2pMiBs, rawMiBs] = [median(p2p), median(raw)]
      const pairRatios = p2p.map((x, i) => x / raw[i]!)
      rows.push({
        msgKiB: kib,
        mib: o.mib,
        libp2pMiBs,
        rawMiBs,
        ratio: libp2pMiBs / rawMiBs,
        reps: o.reps,
        pairRatios,
      })
    }
    const rawEcho = await a.evaluate((n) => window.__bench.rawEcho('t', n), o.echoes)
    const p2pEcho = await a.evaluate((x) => window.__bench.p2pEcho(x.target, x.n), {
      target: bId,
      n: o.echoes,
    })
    const size = JOB_FRAME_BYTES
    const rawFrame = await a.evaluate((x) => window.__bench.rawEcho('t', x.n, x.size), { n: o.echoes, size })
    const rawFrameIdle = await a.evaluate((x) => window.__bench.rawEcho('t', x.n, x.size, 12), {
      n: o.echoes,
      size,
    })
    const p2pFrame = await a.evaluate((x) => window.__bench.p2pEcho(x.target, x.n, x.size), {
      target: bId,
      n: o.echoes,
      size,
    })
    return {
      rows,
      echo: {
        raw: dist(rawEcho.slice(5)),
        libp2pReused: dist(p2pEcho.reused.slice(5)),
        libp2pNewStream: dist(p2pEcho.fresh.slice(5)),
        frameBytes: size,
        rawFrame: dist(rawFrame.slice(5)),
        rawFrameIdle: dist(rawFrameIdle.slice(5)),
        libp2pReusedFrame: dist(p2pFrame.reused.slice(5)),
      },
    }
  } finally {
    await a.evaluate(() => window.__bench.rawClose('t'))
    await b.evaluate(() => window.__bench.rawClose('t'))
  }
}
