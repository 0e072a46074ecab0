/**
 * Several relays, end to end: three peered relay processes, Chromium tabs, direct WebRTC.
 * A tab on R1 only and a tab on R2 only find each other through adverts that cross relays, link
 * directly and run jobs. Then tabs on two relays each lose one mid-batch: every job completes, and
 * each re-reserves on the third relay within 5 s and republishes its addresses.
 */
import { existsSync } from 'node:fs'
import { mkdtemp } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadOrCreateKey } from '../../node/relay/key.ts'
import catalog from '../../public/models/catalog.json' with { type: 'json' }
import { type RelayProcess, startRelayProcess } from '../../scripts/relay-process.ts'
import { type StaticServer, serveStatic } from '../../scripts/serve.ts'
import { mlpForward, mlpInput, mlpWeights } from '../../src/shared/mlp.ts'
import { launchBrowser, type TestBrowser } from '../helpers/chromium.ts'
import { peerId, waitForContributors, waitReady } from '../helpers/swarm.ts'

const DIST = resolve(process.env.PC_DIST ?? resolve(import.meta.dirname, '../../dist'))
const tiny = catalog.find((e) => e.name === 'mlp-tiny')!
const spec = tiny.mlp!
const layers = mlpWeights(spec)

/**
 * A free port below Linux's ephemeral range (32768+): a port the kernel handed out and took back
 * can go to any outgoing socket (Chromium opens many) before the relay binds it.
 */
async function freePort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000)
    const free = await new Promise<boolean>((ok) => {
      const s = createServer()
      s.once('error', () => ok(false))
      s.listen(port, '127.0.0.1', () => s.close(() => ok(true)))
    })
    if (free) return port
  }
}

/** Runs `n` mlp-tiny jobs on `worker` from `tab`, `conc` at a time; `window.__done` counts them. */
function startBatch(tab: Page, worker: string, n: number, seed0: number, conc = 4) {
  const inputs = Array.from({ length: n }, (_, i) => Array.from(mlpInput(spec, seed0 + i)))
  return tab.evaluate(
    async ({ inputs, dims, worker, conc }) => {
      const w = window as unknown as { __done: number }
      w.__done = 0
      const out: { x: number[]; y: number[]; worker: string }[] = []
      let next = 0
      const run = async () => {
        while (next < inputs.length) {
          const x = inputs[next++]!
          const r = await window.__peer.submit(
            'mlp-tiny',
            { x: { dtype: 'float32', dims, data: Float32Array.from(x) } },
            { peer: worker, persist: false },
          )
          out.push({ x, y: Array.from(r.outputs.y!.data as Float32Array), worker: r.worker })
          w.__done++
        }
      }
      await Promise.all(Array.from({ length: conc }, run))
      return out
    },
    { inputs, dims: tiny.inputs[0]!.dims, worker, conc },
  )
}

const checkOutputs = (ran: { x: number[]; y: number[]; worker: string }[], worker: string) => {
  for (const r of ran) {
    expect(r.worker).toBe(worker)
    const want = mlpForward(spec, layers, Float32Array.from(r.x))
    expect(Math.max(...r.y.map((v, i) => Math.abs(v - want[i]!)))).toBeLessThan(1e-4)
  }
}

/** The relay PeerIds in a tab's own circuit addresses: where it holds reservations. */
const reservedOn = (tab: Page) =>
  tab.evaluate(() => {
    const ids = new Set<string>()
    for (const ma of window.__peer.node.getMultiaddrs()) {
      const s = ma.toString()
      if (s.includes('/p2p-circuit')) ids.add(s.split('/p2p-circuit')[0]!.split('/p2p/').pop()!)
    }
    return [...ids].sort()
  })

describe('several relays', () => {
  const relays: RelayProcess[] = []
  const ids: string[] = []
  let web: StaticServer
  let browser: TestBrowser
  const tabs: Page[] = []

  const openTab = async (relayIdx: number[]) => {
    const page = await browser.newIsolatedPage()
    const n = tabs.length
    page.on('pageerror', (e) => console.error(`[tab ${n}] page error: ${e.message}`))
    const q = relayIdx.map((i) => `relay=${encodeURIComponent(relays[i]!.multiaddrs[0]!)}`).join('&')
    await page.goto(`${web.url}?${q}`)
    await waitReady(page)
    tabs.push(page)
    return page
  }

  beforeAll(async () => {
    if (!existsSync(resolve(DIST, 'index.html')))
      throw new Error(`${DIST} is missing: run \`npm run build\` first`)
    // Keys and ports first, so every relay can be told all of them (each skips itself).
    const dir = await mkdtemp(join(tmpdir(), 'pc-relays-'))
    const plan = await Promise.all(
      [0, 1, 2].map(async (i) => {
        const keyFile = join(dir, `key${i}`)
        const id = peerIdFromPrivateKey(await loadOrCreateKey(keyFile)).toString()
        return { keyFile, id, port: await freePort() }
      }),
    )
    const all = plan.map((p) => `/ip4/127.0.0.1/tcp/${p.port}/ws/p2p/${p.id}`)
    for (const p of plan) {
      const args = all.flatMap((a) => ['--peer', a])
      relays.push(await startRelayProcess({ port: p.port, keyFile: p.keyFile, quiet: true, args }))
      ids.push(p.id)
    }
    web = await serveStatic({ root: DIST, relayFile: relays[0]!.addrFile })
    browser = await launchBrowser()
  })
  afterAll(async () => {
    await browser?.close().catch(() => {})
    await web?.close()
    await Promise.allSettled(relays.map((r) => r.stop()))
  })

  it('a tab on R1 only and a tab on R2 only find each other, link directly and run jobs', async () => {
    const a = await openTab([0])
    const b = await openTab([1])
    await expect.poll(() => reservedOn(a), { timeout: 10_000 }).toContain(ids[0])
    await expect.poll(() => reservedOn(b), { timeout: 10_000 }).toContain(ids[1])
    const bId = await peerId(b)
    await b.evaluate(() => window.__peer.setContributing(true))
    // A hears of B only through R1, which has it from R2: A dials nothing but R1 until then.
    const dump = (t: Page) =>
      t.evaluate(() => ({
        id: window.__peer.id,
        peers: window.__peer.peers().map((p) => ({
          id: p.id,
          direct: p.direct,
          c: p.advert.contributing,
          eps: p.advert.eps,
          addrs: p.advert.addrs,
        })),
        conns: window.__peer.node.getConnections().map((c) => `${c.remoteAddr.toString()} ${c.status}`),
        addrs: window.__peer.node.getMultiaddrs().map(String),
      }))
    try {
      await waitForContributors(a, [bId], 30_000)
    } catch (e) {
      console.log(JSON.stringify(await dump(a), null, 1))
      console.log(JSON.stringify(await dump(b), null, 1))
      throw e
    }
    const ran = await startBatch(a, bId, 12, 100)
    expect(ran).toHaveLength(12)
    checkOutputs(ran, bId)
  })

  it('tabs on two relays lose one mid-batch: every job completes, and each re-reserves within 5 s', async () => {
    const c = await openTab([0, 1, 2])
    const d = await openTab([0, 1, 2])
    const [cId, dId] = [await peerId(c), await peerId(d)]
    for (const t of [c, d])
      await t.waitForFunction(() => window.__peer.status().webrtcAddrs.length > 0, null, { timeout: 10_000 })
    await expect.poll(() => reservedOn(c), { timeout: 10_000 }).toHaveLength(2)
    await expect.poll(() => reservedOn(d), { timeout: 10_000 }).toHaveLength(2)
    // Two of three each: they share at least one relay. That one goes.
    const [onC, onD] = [await reservedOn(c), await reservedOn(d)]
    const victim = onC.find((id) => onD.includes(id))!
    const victimIdx = ids.indexOf(victim)
    await d.evaluate(() => window.__peer.setContributing(true))
    await waitForContributors(c, [dId], 30_000)
    // Watch in the pages: when does each hold two reservations again, neither on the victim (polled),
    // and when does libp2p announce its new addresses (self:peer:update, which starts the next advert)?
    for (const t of [c, d]) {
      await t.evaluate((victim) => {
        const w = window as unknown as { __reservedAt?: number; __announcedAt?: number }
        const node = window.__peer.node
        const replaced = () => {
          const on = new Set(
            node
              .getMultiaddrs()
              .map((m) => m.toString())
              .filter((s) => s.includes('/p2p-circuit'))
              .map((s) => s.split('/p2p-circuit')[0]!.split('/p2p/').pop()),
          )
          return on.size === 2 && !on.has(victim)
        }
        const timer = setInterval(() => {
          if (!replaced()) return
          w.__reservedAt = Date.now()
          clearInterval(timer)
        }, 10)
        node.addEventListener('self:peer:update', () => {
          if (replaced()) w.__announcedAt ??= Date.now()
        })
      }, victim)
    }
    const batch = startBatch(c, dId, 60, 500, 2)
    await c.waitForFunction(() => (window as unknown as { __done: number }).__done >= 10, null, {
      polling: 20,
    })
    const killedAt = Date.now()
    relays[victimIdx]!.child.kill('SIGKILL')
    const doneAtKill = await c.evaluate(() => (window as unknown as { __done: number }).__done)
    expect(doneAtKill).toBeLessThan(60) // the batch was still running
    const ran = await batch
    expect(ran).toHaveLength(60)
    checkOutputs(ran, dId)

    for (const [t, id] of [
      [c, cId],
      [d, dId],
    ] as const) {
      type W = { __reservedAt?: number; __announcedAt?: number }
      await t.waitForFunction(() => (window as unknown as W).__announcedAt, null, { timeout: 5000 })
      const at = await t.evaluate(() => {
        const w = window as unknown as W
        return [w.__reservedAt!, w.__announcedAt!]
      })
      const [reserved, announced] = [at[0]! - killedAt, at[1]! - killedAt]
      console.log(
        `tab ${id.slice(-6)}, after the kill (${doneAtKill}/60 jobs done): reserved again ${reserved} ms, addresses announced ${announced} ms`,
      )
      expect(announced).toBeLessThan(5000)
      const now = await reservedOn(t)
      expect(now).toHaveLength(2)
      expect(now).not.toContain(victim)
    }
    // The new addresses are in the next advert: the other tab sees them, and none via the victim.
    await c.waitForFunction(
      ({ dId, victim }) => {
        const addrs = window.__peer.peers().find((p) => p.id === dId)?.advert.addrs ?? []
        const via = new Set(addrs.map((a) => a.split('/p2p-circuit')[0]!.split('/p2p/').pop()))
        return via.size === 2 && !via.has(victim)
      },
      { dId, victim },
      { timeout: 5000, polling: 50 },
    )
  })
})
