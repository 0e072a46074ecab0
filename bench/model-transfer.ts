/**
 * 3b. Model transfer over `/peer-compute/model/1.0.0` (src/models): a 10 MB and a 50 MB model
 * fetched by the requester from one contributor and from two at once, against a raw RTCDataChannel
 * carrying the same bytes in the same direction (contributor → requester), alternating, in one run.
 * The raw figure is the faster median of 64 KiB and 256 KiB messages (the chunk size, and Chromium's
 * limit). The raw channel is warmed up first, and so is each provider
 * (its first upload of a model reads and hashes it, and computes the chunk digests): that first
 * fetch is reported apart as `coldOnePeerMiBs`. Skipped, with the reason, where the peer API has no
 * `models.fetchFromPeers`.
 */
import type { Page } from 'playwright-core'
import { XFER_MODELS } from './models.ts'
import { MiB, median } from './stats.ts'

/** Raw message sizes tried; the faster one is the baseline. */
const RAW_MESSAGES = [64 * 1024, 256 * 1024]

export interface TransferRow {
  model: string
  mib: number
  onePeerMiBs: number
  twoPeersMiBs: number
  rawMiBs: number
  onePeerVsRaw: number
  twoPeersVsRaw: number
  /** The first fetch of this model from contributor 0: its cache read, hash and chunk digests included. */
  coldOnePeerMiBs: number
  /** MiB/s of every repetition, in order; the raw figure is the faster median of `raw64k` and `raw256k`. */
  runs: { raw64k: number[]; raw256k: number[]; onePeer: number[]; twoPeers: number[] }
  reps: number
}

export async function modelTransferBench(req: Page, ctrs: Page[], ids: string[], quick: boolean) {
  const has = await req.evaluate(() => typeof window.__peer.models?.fetchFromPeers === 'function')
  if (!has) return { status: 'skipped: the peer API has no models.fetchFromPeers yet' }
  const [c0, c1] = [ctrs[0]!, ctrs[1]!]
  const offer = await c0.evaluate(() => window.__bench.rawOffer('m'))
  const answer = await req.evaluate((sdp) => window.__bench.rawAnswer('m', sdp), offer)
  await c0.evaluate((sdp) => window.__bench.rawConnect('m', sdp), answer)
  for (const msg of RAW_MESSAGES) {
    await c0.evaluate((x) => window.__bench.rawSend('m', x.bytes, x.msg), { bytes: 4 * MiB, msg }) // warm-up
  }
  const rows: TransferRow[] = []
  try {
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
      const coldOnePeerMiBs = rate(await fetch([ids[0]!]))
      await fetch([ids[1]!]) // warms contributor 1 alike
      const one: number[] = []
      const two: number[] = []
      const raw: number[][] = RAW_MESSAGES.map(() => [])
      const reps = quick ? 1 : 3
      for (let i = 0; i < reps; i++) {
        for (const [k, msg] of RAW_MESSAGES.entries()) {
          const r = await c0.evaluate((x) => window.__bench.rawSend('m', x.size, x.msg), { size, msg })
          raw[k]!.push(rate(r.ms))
        }
        one.push(rate(await fetch([ids[0]!])))
        two.push(rate(await fetch([ids[0]!, ids[1]!])))
      }
      const [onePeerMiBs, twoPeersMiBs] = [median(one), median(two)]
      const rawMiBs = Math.max(...raw.map((r) => median(r)))
      rows.push({
        model: m.name,
        mib: size / MiB,
        onePeerMiBs,
        twoPeersMiBs,
        rawMiBs,
        onePeerVsRaw: onePeerMiBs / rawMiBs,
        twoPeersVsRaw: twoPeersMiBs / rawMiBs,
        coldOnePeerMiBs,
        runs: { raw64k: raw[0]!, raw256k: raw[1]!, onePeer: one, twoPeers: two },
        reps,
      })
    }
  } finally {
    await c0.evaluate(() => window.__bench.rawClose('m'))
    await req.evaluate(() => window.__bench.rawClose('m'))
  }
  return { status: 'measured', rows }
}
