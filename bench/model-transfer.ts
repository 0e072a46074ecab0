/**
 * 3b. Model transfer over `/peer-compute/model/1.0.0` (src/models): a 10 MB and a 50 MB model
 * fetched by the requester from one contributor and from two at once, against a raw RTCDataChannel
 * carrying the same bytes in the same direction (contributor → requester), alternating, in one run.
 * Raw messages are 64 KiB or 256 KiB (the chunk size, and Chromium's limit): one warm-up send of the
 * whole model with each picks the faster, and only the repetitions after it count, so picking does
 * not favour raw. Two raw channels at once (each contributor sends half the model) measure what a
 * second peer can add on this machine at all: the ceiling of the 2-peer fetch. Each provider is warmed up too (its first upload of a model reads and hashes it,
 * and computes the chunk digests): that first fetch is reported apart as `coldOnePeerMiBs`. Skipped,
 * with the reason, where the peer API has no `models.fetchFromPeers`.
 */
import type { Page } from 'playwright-core'
import { XFER_MODELS } from './models.ts'
import { MiB, median } from './stats.ts'
import { connectRaw } from './transport.ts'

/** Raw message sizes tried; the faster one is the baseline. */
const RAW_MESSAGES = [64 * 1024, 256 * 1024]

export interface TransferRow {
  model: string
  mib: number
  onePeerMiBs: number
  twoPeersMiBs: number
  rawMiBs: number
  /** Both contributors each sending half the bytes on a raw channel of its own, at once. */
  twoRawMiBs: number
  onePeerVsRaw: number
  twoPeersVsRaw: number
  /** What a second peer adds to raw channels here: > 1 only where the machine has room for it. */
  twoRawVsRaw: number
  /** The first fetch of this model from contributor 0: its cache read, hash and chunk digests included. */
  coldOnePeerMiBs: number
  /** Raw message size, KiB: the faster in the warm-up sends (`pick`). */
  rawMessageKiB: number
  /** MiB/s of every repetition, in order, and of the warm-up sends by message KiB. */
  runs: {
    raw: number[]
    twoRaw: number[]
    onePeer: number[]
    twoPeers: number[]
    pick: Record<string, number>
  }
  reps: number
}

export async function modelTransferBench(req: Page, ctrs: Page[], ids: string[], quick: boolean) {
  const has = await req.evaluate(() => typeof window.__peer.models?.fetchFromPeers === 'function')
  if (!has) return { status: 'skipped: the peer API has no models.fetchFromPeers yet' }
  const [c0, c1] = [ctrs[0]!, ctrs[1]!]
  const rows: TransferRow[] = []
  try {
    for (const [i, c] of [c0, c1].entries()) {
      await connectRaw(c, 'm', (offer) =>
        req.evaluate((x) => window.__bench.rawAnswer(`m${x.i}`, x.offer), { i, offer }),
      )
    }
    for (const msg of RAW_MESSAGES) {
      await c0.evaluate((x) => window.__bench.rawSend('m', x.bytes, x.msg), { bytes: 8 * MiB, msg }) // warm-up
    }
    await c1.evaluate((bytes) => window.__bench.rawSend('m', bytes, 64 * 1024), 8 * MiB)
    for (const m of quick ? XFER_MODELS.slice(0, 1) : XFER_MODELS) {
      const url = `/bench/models/${m.name}.onnx`
      const infos = await Promise.all(
        [c0, c1].map((c) => c.evaluate((u) => window.__peer.models.importUrl(u), url)),
      )
      const { cid, size } = infos[0]!
      const fetch = (peers: string[]) =>
        req.evaluate(
          async (a) => {
            await window.__peer.models.delete(a.cid).catch(() => {})
            const t = await window.__peer.models.fetchFromPeers(a.cid, {
              peers: a.peers,
              parallel: a.peers.length,
            })
            return t.ms
          },
          { cid, peers },
        )
      const rate = (ms: number) => size / MiB / (ms / 1000)
      const rawSend = async (msg: number) =>
        rate((await c0.evaluate((x) => window.__bench.rawSend('m', x.size, x.msg), { size, msg })).ms)
      /** Each contributor sends half (whole messages), at once; from the first start to the last end. */
      const twoRawSend = async (msg: number) => {
        const half = Math.ceil(size / 2 / msg) * msg
        const both = await Promise.all(
          [c0, c1].map((c) => c.evaluate((x) => window.__bench.rawSend('m', x.half, x.msg), { half, msg })),
        )
        const ms = Math.max(...both.map((b) => b.end)) - Math.min(...both.map((b) => b.start))
        return (2 * half) / MiB / (ms / 1000)
      }
      const pick: Record<string, number> = {}
      for (const msg of RAW_MESSAGES) pick[msg / 1024] = await rawSend(msg)
      const rawMessageKiB = Number(Object.entries(pick).sort((a, b) => b[1] - a[1])[0]![0])
      const coldOnePeerMiBs = rate(await fetch([ids[0]!]))
      await fetch([ids[1]!]) // warms contributor 1 alike
      const raw: number[] = []
      const twoRaw: number[] = []
      const one: number[] = []
      const two: number[] = []
      const reps = quick ? 1 : 7
      for (let i = 0; i < reps; i++) {
        raw.push(await rawSend(rawMessageKiB * 1024))
        one.push(rate(await fetch([ids[0]!])))
        two.push(rate(await fetch([ids[0]!, ids[1]!])))
        twoRaw.push(await twoRawSend(rawMessageKiB * 1024))
      }
      const [onePeerMiBs, twoPeersMiBs, rawMiBs, twoRawMiBs] = [
        median(one),
        median(two),
        median(raw),
        median(twoRaw),
      ]
      rows.push({
        model: m.name,
        mib: size / MiB,
        onePeerMiBs,
        twoPeersMiBs,
        rawMiBs,
        twoRawMiBs,
        twoRawVsRaw: twoRawMiBs / rawMiBs,
        onePeerVsRaw: onePeerMiBs / rawMiBs,
        twoPeersVsRaw: twoPeersMiBs / rawMiBs,
        coldOnePeerMiBs,
        rawMessageKiB,
        runs: { raw, twoRaw, onePeer: one, twoPeers: two, pick },
        reps,
      })
    }
  } finally {
    for (const c of [c0, c1]) await c.evaluate(() => window.__bench.rawClose('m'))
    await req.evaluate(() => ['m0', 'm1'].forEach(window.__bench.rawClose))
  }
  return { status: 'measured', rows }
}
