/**
 * Chunk-size comparison for `/peer-compute/model/1.0.0`: a 10 MB and a 50 MB model fetched by a tab in
 * its own browser profile from one peer (64 KiB / 256 KiB / 1 MiB chunks) and from two peers at once,
 * beside an HTTP fetch of the same file from the static server.
 * Usage: PC_DIST=/tmp/hub-dist npx tsx bench/model-chunks.ts   (build first; prints a markdown table)
 */
import '../node/relay/polyfill.ts'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { resolve } from 'node:path'
import type { Page } from 'playwright-core'
import { mlpModelBytes } from '../scripts/gen-models.ts'
import { modelCid } from '../src/shared/cid.ts'
import { launchBrowser } from '../test/helpers/chromium.ts'
import { peerId, startSwarm, waitReady } from '../test/helpers/swarm.ts'

const DIST = resolve(process.env.PC_DIST ?? resolve(import.meta.dirname, '../dist'))
const MiB = 1024 * 1024
const KiB = 1024
const MODELS = [
  { name: '10MB', layers: [16, 2560, 1024, 8], reps: 5 },
  { name: '50MB', layers: [16, 4096, 3072, 8], reps: 3 },
]
const CHUNKS = [64 * KiB, 256 * KiB, 1024 * KiB]

/** One peer fetch in `page`: `ms` from opening streams to the CID check, `wallMs` including storing the model. */
export async function fetchOnce(
  page: Page,
  cid: string,
  peers: string[],
  chunkSize: number,
  parallel: number,
) {
  return page.evaluate(
    async (a) => {
      const t0 = performance.now()
      const t = await window.__peer.models.fetchFromPeers(a.cid, {
        peers: a.peers,
        chunkSize: a.chunkSize,
        parallel: a.parallel,
      })
      return {
        size: t.size,
        ms: t.ms,
        wallMs: performance.now() - t0,
        providers: Object.keys(t.providers).length,
      }
    },
    { cid, peers, chunkSize, parallel },
  )
}

const RAW_PROTOCOL = '/peer-compute/bench-raw/1'

/** The transport's ceiling in the same run: `bytes` over one libp2p WebRTC stream, 64 KiB sends, no framing. */
async function rawStream(provider: Page, fetcher: Page, providerId: string, bytes: number): Promise<number> {
  await provider.evaluate(
    async ({ proto, bytes }) => {
      const node = window.__peer.node
      if (node.getProtocols().includes(proto)) return
      await node.handle(proto, async (stream) => {
        const piece = new Uint8Array(64 * 1024)
        for (let sent = 0; sent < bytes; sent += piece.byteLength) {
          // the same backpressure as the model protocol (src/models/stream.ts): wait for 'drain' events
          if (!stream.send(piece))
            while (stream.writableNeedsDrain)
              await new Promise((r) => stream.addEventListener('drain', r, { once: true }))
        }
        await stream.close()
      })
    },
    { proto: `${RAW_PROTOCOL}/${bytes}`, bytes }, // one protocol per size: a handler serves one size
  )
  return fetcher.evaluate(
    async ({ proto, id, bytes }) => {
      const conn = window.__peer.node
        .getConnections()
        .find((c) => c.remotePeer.toString() === id && c.remoteAddr.toString().includes('/webrtc'))
      if (!conn) throw new Error('no direct connection')
      const t0 = performance.now()
      const stream = await conn.newStream(proto)
      let n = 0
      for await (const chunk of stream) n += chunk.byteLength
      if (n < bytes) throw new Error(`received ${n} of ${bytes} bytes`)
      return performance.now() - t0
    },
    { proto: `${RAW_PROTOCOL}/${bytes}`, id: providerId, bytes },
  )
}

const rate = (bytes: number, ms: number) => bytes / MiB / (ms / 1000)
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

async function main(): Promise<void> {
  const dir = resolve(DIST, 'bench-hub')
  mkdirSync(dir, { recursive: true })
  const models = []
  for (const m of MODELS) {
    const bytes = mlpModelBytes({ seed: 31, layers: m.layers, batch: 1 })
    writeFileSync(resolve(dir, `${m.name}.onnx`), bytes)
    models.push({
      ...m,
      size: bytes.length,
      cid: (await modelCid(bytes)).toString(),
      url: `bench-hub/${m.name}.onnx`,
    })
  }
  const swarm = await startSwarm({ tabs: 2 }) // A and C share a profile, so both hold what A imports
  const other = await launchBrowser()
  const rows: string[] = []
  try {
    const [a, c] = swarm.tabs as [Page, Page]
    const b = await other.newPage()
    await b.goto(swarm.web.url)
    await waitReady(b)
    const [aId, cId] = [await peerId(a), await peerId(c)]
    for (const m of models) await a.evaluate((url) => window.__peer.models.importUrl(url), m.url)
    await b.waitForFunction(
      (ids) => ids.every((id) => window.__peer.peers().some((p) => p.id === id && p.direct)),
      [aId, cId],
      { timeout: 30_000 },
    )
    for (const m of models) {
      // Every source once per round, so each round's figures share the machine's load.
      const sources: [string, () => Promise<number>][] = [
        [
          'HTTP fetch (static server)',
          () =>
            b.evaluate(async (url) => {
              const t0 = performance.now()
              await (await fetch(url, { cache: 'no-store' })).arrayBuffer()
              return performance.now() - t0
            }, m.url),
        ],
        ['raw libp2p stream, 64 KiB sends', () => rawStream(a, b, aId, m.size)],
        ...CHUNKS.map((cs): [string, () => Promise<number>] => [
          `1 peer, ${cs / KiB} KiB chunks`,
          async () => (await fetchOnce(b, m.cid, [aId], cs, 1)).ms,
        ]),
        [
          '2 peers (A + C), 256 KiB chunks',
          async () => (await fetchOnce(b, m.cid, [aId, cId], 256 * KiB, 2)).ms,
        ],
      ]
      const ms = sources.map((): number[] => [])
      for (let i = 0; i < m.reps; i++) {
        for (const [k, [, run]] of sources.entries()) ms[k]!.push(await run())
      }
      const raw = median(ms[1]!)
      for (const [k, [label]] of sources.entries()) {
        const runs = ms[k]!.map((x) => rate(m.size, x).toFixed(1)).join(' / ')
        const ratio = (raw / median(ms[k]!)).toFixed(2)
        rows.push(
          `| ${m.name} | ${label} | ${runs} | ${rate(m.size, median(ms[k]!)).toFixed(1)} | ${ratio} |`,
        )
        console.error(rows.at(-1))
      }
    }
  } finally {
    await other.close()
    await swarm.stop()
    rmSync(dir, { recursive: true, force: true })
  }
  console.log('| model | source | runs (MiB/s) | median MiB/s | ÷ raw stream |')
  console.log('| --- | --- | --- | --- | --- |')
  for (const r of rows) console.log(r)
}

if (import.meta.url === `file://${process.argv[1]}`) await main()
