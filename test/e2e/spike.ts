import { startRelayProcess } from '../../scripts/relay-process.ts'
import { serveStatic } from '../../scripts/serve.ts'
import { launchBrowser } from '../helpers/chromium.ts'

const relay = await startRelayProcess({ quiet: false })
const web = await serveStatic({ root: 'dist', relayFile: relay.addrFile })
const browser = await launchBrowser()
const pages = []
for (let i = 0; i < 3; i++) {
  const p = await browser.newPage()
  p.on('console', (m) => console.log(`[tab${i}] ${m.text()}`))
  p.on('pageerror', (e) => console.log(`[tab${i}] ERROR ${e.message}`))
  await p.goto(web.url)
  await p.waitForFunction(() => document.body.dataset.ready, null, { timeout: 30000 })
  pages.push(p)
}
for (const p of pages)
  console.log(
    await p.evaluate(() =>
      JSON.stringify({ id: (window as any).__peer.id, s: (window as any).__peer.status() }),
    ),
  )
await pages[1]!.evaluate(() => (window as any).__peer.setContributing(true))
await pages[2]!.evaluate(() => (window as any).__peer.setContributing(true))
await new Promise((r) => setTimeout(r, 4000))
for (const p of pages)
  console.log(
    await p.evaluate(() =>
      JSON.stringify(
        (window as any).__peer
          .peers()
          .map((x: any) => ({
            id: x.id.slice(-6),
            d: x.direct,
            c: x.advert.contributing,
            s: x.advert.slots,
            eps: x.advert.eps,
          })),
      ),
    ),
  )
const r = await pages[0]!.evaluate(async () => {
  const peer = (window as any).__peer
  const out = []
  for (let i = 0; i < 4; i++) {
    try {
      const res = await peer.submit('mlp-tiny', {
        x: { dtype: 'float32', dims: [1, 16], data: new Float32Array(16).fill(0.5) },
      })
      out.push({
        w: res.worker.slice(-6),
        ep: res.ep,
        rt: res.roundTripMs,
        y: Array.from(res.outputs.y.data).slice(0, 3),
      })
    } catch (e) {
      out.push({ err: (e as Error).name + ': ' + (e as Error).message })
    }
  }
  return out
})
console.log(JSON.stringify(r, null, 1))
await browser.close()
await web.close()
await relay.stop()
