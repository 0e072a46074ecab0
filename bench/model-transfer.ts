/**
 * 3b. Model transfer over `/peer-compute/model/1.0.0` (src/models): a 10 MB and a 50 MB model
 * fetched by the requester from one contributor and from two at once, against a raw RTCDataChannel
 * carrying the same bytes in the same direction (contributor → requester), alternating, in one run.
 * Skipped, with the reason, where the peer API has no `models.fetchFromPeers`.
 */
import type { Page } from 'playwright-core'
import { XFER_MODELS } from './models.ts'
import { MiB, median } from './stats.ts'

export interface TransferRow {
  model: string
  mib: number
  onePeerMiBs: number
  twoPeersMiBs: number
  rawMiBs: number
  onePeerVsRaw: number
  twoPeersVsRaw: number
  reps: number
}

export async function modelTransferBench(req: Page, ctrs: Page[], ids: string[], quick: boolean) {
  const has = await req.evaluate(() => typeof window.__peer.models?.fetchFromPeers === 'function')
  if (!has) return { status: 'skipped: the peer API has no models.fetchFromPeers yet' }
  const [c0, c1] = [ctrs[0]!, ctrs[1]!]
  const offer = await c0.evaluate(() => window.__bench.rawOffer('m'))
  const answer = await req.evaluate((sdp) => window.__bench.rawAnswer('m', sdp), offer)
  await c0.evaluate((sdp) => window.__bench.rawConnect('m', sdp), answer)
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
      const one: number[] = []
      const two: number[] = []
      const raw: number[] = []
      const reps = quick ? 1 : 2
      for (let i = 0; i < reps; i++) {
        raw.push((await c0.evaluate((n) => window.__bench.rawSend('m', n, 64 * 1024), size)).ms)
        one.push(await fetch([ids[0]!]))
        two.push(await fetch([ids[0]!, ids[1]!]))
      }
      const rate = (ms: number[]) => size / MiB / (median(ms) / 1000)
      const [onePeerMiBs, twoPeersMiBs, rawMiBs] = [rate(one), rate(two), rate(raw)]
      rows.push({
        model: m.name,
        mib: size / MiB,
        onePeerMiBs,
        twoPeersMiBs,
        rawMiBs,
        onePeerVsRaw: onePeerMiBs / rawMiBs,
        twoPeersVsRaw: twoPeersMiBs / rawMiBs,
        reps,
      })
    }
  } finally {
    await c0.evaluate(() => window.__bench.rawClose('m'))
    await req.evaluate(() => window.__bench.rawClose('m'))
  }
  return { status: 'measured', rows }
}
