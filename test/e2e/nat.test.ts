/**
 * The app across NAT, in the lab (test/helpers/netlab.ts): A in home 1 submits, B (plain NAT, home 2)
 * and C (symmetric NAT, home 3) contribute; for the dispute, a liar tab of the test build joins home 3. The static server mints coturn credentials per tab, as
 * `npm start` does. A second server with no ICE servers, on a relay of its own, shows what a swarm
 * across NAT without them says.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import catalog from '../../public/models/catalog.json' with { type: 'json' }
import { mlpForward, mlpInput, mlpWeights } from '../../src/shared/mlp.ts'
import { verifyQuorumRecord } from '../../src/trust/quorum-record.ts'
import { decodeReceipt, verifyReceipt } from '../../src/trust/receipt.ts'
import type { TestBrowser } from '../helpers/chromium.ts'
import { type Coturn, startCoturn } from '../helpers/coturn.ts'
import {
  type LabRelay,
  type LabWeb,
  launchLabBrowser,
  startLabRelay,
  startLabWeb,
} from '../helpers/lab-services.ts'
import { importUrl, serveModels, testModel } from '../helpers/models.ts'
import { createLab, type Lab } from '../helpers/netlab.ts'
import { peerId, waitLink, waitReady } from '../helpers/swarm.ts'

const DIST = resolve(process.env.PC_DIST ?? resolve(import.meta.dirname, '../../dist'))
/** The test build, for one liar tab (test hooks), served from an origin of its own. */
const DIST_TEST = resolve(process.env.PC_DIST_TEST ?? resolve(import.meta.dirname, '../../dist-test'))
const tiny = catalog.find((e) => e.name === 'mlp-tiny')!
const spec = tiny.mlp!
const N = 20
/** One replica per job, on the named contributor: each batch crosses exactly the link under test. */
const SINGLE = { redundancy: 1, quorum: 1, adaptive: false }

interface Pair {
  local: string
  remote: string
  localAddress: string
  remoteAddress: string
}

/** In A: the selected candidate pair of each connected WebRTC link to `id`, from getStats(). */
const selectedPairs = (page: Page, id: string) =>
  page.evaluate(async (id) => {
    const out: Pair[] = []
    for (const c of window.__peer.node.getConnections()) {
      if (c.remotePeer.toString() !== id || !c.remoteAddr.toString().includes('/webrtc')) continue
      const pc = (c as unknown as { maConn?: { peerConnection?: RTCPeerConnection } }).maConn?.peerConnection
      if (pc?.connectionState !== 'connected') continue
      const stats = new Map<string, Record<string, string>>()
      ;(await pc.getStats()).forEach((s: Record<string, string>) => {
        stats.set(s.id!, s)
      })
      const transport = [...stats.values()].find((s) => s.type === 'transport')
      const pair = stats.get(transport?.selectedCandidatePairId ?? '')
      const l = stats.get(pair?.localCandidateId ?? '')
      const r = stats.get(pair?.remoteCandidateId ?? '')
      if (l && r) {
        out.push({
          local: l.candidateType!,
          remote: r.candidateType!,
          localAddress: l.address ?? '',
          remoteAddress: r.address ?? '',
        })
      }
    }
    return out
  }, id)

/** What a selected pair's candidate types say the path is. */
const pathOf = (p: Pair) =>
  [p.local, p.remote].includes('relay')
    ? 'turn'
    : [p.local, p.remote].some((t) => t === 'srflx' || t === 'prflx')
      ? 'stun'
      : 'host'

interface Ran {
  x: number[]
  y: number[]
  workers: string[]
  receipt: number[]
}

/** `n` jobs of mlp-tiny from `page`, all at once, each on `worker` only. */
function batch(page: Page, worker: string, n: number, seed0: number): Promise<Ran[]> {
  const inputs = Array.from({ length: n }, (_, i) => Array.from(mlpInput(spec, seed0 + i)))
  return page.evaluate(
    ({ inputs, dims, worker, policy }) =>
      Promise.all(
        inputs.map(async (x) => {
          const peer = window.__peer
          const r = await peer.submit(
            'mlp-tiny',
            { x: { dtype: 'float32', dims, data: Float32Array.from(x) } },
            { peer: worker, policy },
          )
          const rec = (await peer.jobs(1000)).find((j) => j.jobCid === r.job)!
          return {
            x,
            y: Array.from(r.outputs.y!.data as Float32Array),
            workers: r.workers,
            receipt: Array.from(rec.receipt!),
          }
        }),
      ),
    { inputs, dims: tiny.inputs[0]!.dims, worker, policy: SINGLE },
  )
}

describe('swarm across NAT', () => {
  let lab: Lab
  let turn: Coturn
  let relay: LabRelay
  let bareRelay: LabRelay
  let web: LabWeb
  let bare: LabWeb // no ICE servers
  let hooked: LabWeb // the test build, same relay and ICE servers
  let browsers: TestBrowser[] = []
  let a: Page
  let b: Page
  let c: Page
  let ids: { a: string; b: string; c: string }
  let scratch: string

  const open = async (browser: TestBrowser, url: string, name: string) => {
    const page = await browser.newIsolatedPage()
    page.on('pageerror', (e) => console.error(`[${name}] page error: ${e.message}`))
    // NAT_DEBUG='peer-compute:discovery,libp2p:webrtc*' prints the tabs' debug logs.
    if (process.env.NAT_DEBUG) {
      await page.addInitScript((d) => localStorage.setItem('debug', d), process.env.NAT_DEBUG)
      page.on('console', (m) => console.error(`[${name}] ${m.text()}`))
    }
    await page.goto(url)
    await waitReady(page)
    return page
  }

  beforeAll(async () => {
    for (const root of [DIST, DIST_TEST])
      if (!existsSync(join(root, 'index.html'))) throw new Error(`${root} is missing: run \`npm run build\``)
    scratch = mkdtempSync(join(tmpdir(), 'pc-nat-'))
    lab = await createLab({ homes: ['nat', 'nat', 'symmetric'] })
    ;[turn, relay, bareRelay] = await Promise.all([
      startCoturn(lab),
      startLabRelay(lab, { port: 9090 }),
      startLabRelay(lab, { port: 9091 }),
    ])
    const ice = { stun: [turn.stunUrl], turn: [turn.turnUrl], secret: turn.secret }
    ;[web, bare, hooked] = await Promise.all([
      startLabWeb(lab, { root: DIST, configFile: relay.addrFile, port: 8080, ice }),
      startLabWeb(lab, { root: DIST, configFile: bareRelay.addrFile, port: 8081 }),
      startLabWeb(lab, { root: DIST_TEST, configFile: relay.addrFile, port: 8082, ice }),
    ])
    const origins = [web.origin, bare.origin, hooked.origin]
    browsers = await Promise.all(lab.homes.map((h) => launchLabBrowser(lab, h, { origins })))
    const tabs = await Promise.all(browsers.map((br, i) => open(br, web.url, 'ABC'[i]!)))
    ;[a, b, c] = tabs as [Page, Page, Page]
    ids = { a: await peerId(a), b: await peerId(b), c: await peerId(c) }
    await Promise.all([b, c].map((t) => t.evaluate(() => window.__peer.setContributing(true))))
  })

  afterAll(async () => {
    await Promise.all(browsers.map((br) => br.close().catch(() => {})))
    await lab?.close()
    if (scratch) rmSync(scratch, { recursive: true, force: true })
  })

  const checkBatch = async (ran: Ran[], worker: string) => {
    const layers = mlpWeights(spec)
    expect(ran).toHaveLength(N)
    for (const r of ran) {
      expect(r.workers).toEqual([worker])
      const want = mlpForward(spec, layers, Float32Array.from(r.x))
      expect(Math.max(...r.y.map((v, i) => Math.abs(v - want[i]!)))).toBeLessThan(1e-4)
      const receipt = await verifyReceipt(decodeReceipt(Uint8Array.from(r.receipt)), { requester: ids.a })
      expect(receipt.body.worker).toBe(worker)
    }
  }

  it('(a) joins two plain NAT homes over STUN and verifies 20/20 jobs on that link', async () => {
    await waitLink(a, ids.b, 'stun')
    await checkBatch(await batch(a, ids.b, N, 100), ids.b)
    expect(await a.evaluate((id) => window.__peer.peers().find((p) => p.id === id)?.path, ids.b)).toBe('stun')
  })

  it('(b) joins the symmetric NAT home through TURN with minted credentials, 20/20 jobs', async () => {
    await waitLink(a, ids.c, 'turn')
    await checkBatch(await batch(a, ids.c, N, 200), ids.c)
    // C's relay candidate was allocated with what the server minted for C: `expiry:<C's PeerId>`.
    const mine = turn.allocations().filter((u) => u.endsWith(`:${ids.c}`))
    expect(mine.length, turn.log().slice(-2000)).toBeGreaterThan(0)
    const expiry = Number(mine[0]!.split(':')[0])
    expect(expiry * 1000).toBeGreaterThan(Date.now())
    expect(turn.allocations().some((u) => u.endsWith(':anon'))).toBe(false)
  })

  it('(f) the Peers table shows the path of the selected candidate pair', async () => {
    for (const [id, want] of [
      [ids.b, 'stun'],
      [ids.c, 'turn'],
    ] as const) {
      const pairs = await selectedPairs(a, id)
      console.log(`A's selected pair to ${want === 'stun' ? 'B' : 'C'}: ${JSON.stringify(pairs)}`)
      expect(pairs.length, `no connected link to ${id}`).toBeGreaterThan(0)
      for (const p of pairs) {
        expect(pathOf(p), JSON.stringify(p)).toBe(want)
        // The far end is what a NAT mapped (100.64.n.2) or coturn relays from, never a home's LAN
        // (Chromium hides a remote prflx candidate's address).
        if (p.remoteAddress) expect(p.remoteAddress, JSON.stringify(p)).toMatch(/^100\.64\./)
      }
      const row = `#peers tr[data-peer="${id}"]`
      await expect.poll(() => a.getAttribute(row, 'data-path')).toBe(want)
      expect(await a.textContent(row)).toContain(`direct · ${want === 'stun' ? 'STUN' : 'TURN'}`)
    }
    expect(await a.evaluate(() => window.__peer.status().paths)).toMatchObject({ stun: 1, turn: 1 })
    expect(await a.textContent('#links')).toMatch(/1 STUN.*1 TURN|1 TURN.*1 STUN/)
    expect(await a.isHidden('#network-warning')).toBe(true)
  })

  it('(e) a contributor fetches a model it lacks from the requester across the NAT (STUN and TURN)', async () => {
    const m = await testModel('nat-job', { seed: 31, layers: [16, 512, 512, 8], batch: 1 }) // 1.1 MB
    await serveModels(a, [m])
    expect(await importUrl(a, m)).toBe(m.cid)
    const x = Array.from(mlpInput(m.spec, 7))
    const run = (worker: string) =>
      a.evaluate(
        async ({ cid, worker, x, policy }) => {
          const out = await window.__peer.submit(
            cid,
            { x: { dtype: 'float32', dims: [1, 16], data: Float32Array.from(x) } },
            { peer: worker, policy, timeoutMs: 90_000 },
          )
          return { workers: out.workers, y: Array.from(out.outputs.y!.data as Float32Array) }
        },
        { cid: m.cid, worker, x, policy: SINGLE },
      )
    const want = mlpForward(m.spec, mlpWeights(m.spec), Float32Array.from(x))
    const ran = await Promise.all([run(ids.b), run(ids.c)])
    for (const [i, [page, id]] of (
      [
        [b, ids.b],
        [c, ids.c],
      ] as const
    ).entries()) {
      expect(ran[i]!.workers).toEqual([id])
      for (const [j, v] of ran[i]!.y.entries()) expect(v).toBeCloseTo(want[j]!, 3)
      const t = (await page.evaluate(() => window.__peer.models.transfers())).find((t) => t.cid === m.cid)
      expect(t).toMatchObject({ cid: m.cid, size: m.bytes.length, corrupt: 0 })
      expect(Object.keys(t!.providers)).toEqual([ids.a])
    }
    // The bytes came over the links whose paths (a) and (b) showed.
    expect(await b.evaluate((id) => window.__peer.peers().find((p) => p.id === id)?.path, ids.a)).toBe('stun')
    expect(await c.evaluate((id) => window.__peer.peers().find((p) => p.id === id)?.path, ids.a)).toBe('turn')
  })

  it('(i) a dispute across NAT: a liar behind symmetric NAT is convicted over TURN, the honest result over STUN verified by a third', async () => {
    // The liar (test build) in C's home; C stands aside until both first replicas are out, so the
    // dispute is between B (STUN) and the liar (TURN), and C gives the third replica.
    const page = await browsers[2]!.newIsolatedPage()
    await page.addInitScript(
      (hooks) => {
        ;(globalThis as { __peerComputeTestHooks?: unknown }).__peerComputeTestHooks = hooks
      },
      { adversary: 'always-wrong', disputeLie: true },
    )
    await page.goto(hooked.url)
    await waitReady(page)
    const liar = await peerId(page)
    try {
      await c.evaluate(() => window.__peer.setContributing(false))
      await page.evaluate(() => window.__peer.setContributing(true))
      await waitLink(a, ids.b, 'stun')
      await waitLink(a, liar, 'turn')
      const x = Array.from(mlpInput(spec, 900))
      await a.evaluate(
        ({ x, dims }) => {
          const w = window as unknown as { __disputed: Promise<unknown> }
          const policy = { redundancy: 2, quorum: 2, adaptive: false }
          w.__disputed = window.__peer.submit(
            'mlp-tiny',
            { x: { dtype: 'float32', dims, data: Float32Array.from(x) } },
            { policy },
          )
        },
        { x, dims: tiny.inputs[0]!.dims },
      )
      await expect
        .poll(() => a.evaluate(async () => (await window.__peer.jobs(1))[0]?.replicas?.length ?? 0), {
          interval: 50,
          timeout: 30_000,
        })
        .toBeGreaterThanOrEqual(2)
      await c.evaluate(() => window.__peer.setContributing(true))
      const r = await a.evaluate(async () => {
        const w = window as unknown as { __disputed: ReturnType<typeof window.__peer.submit> }
        const out = await w.__disputed
        return {
          workers: out.workers,
          record: Array.from(out.record),
          reputation: window.__peer.reputation.all(),
        }
      })
      expect(new Set(r.workers)).toEqual(new Set([ids.b, ids.c]))
      expect(r.reputation.find((p) => p.peer === liar)).toMatchObject({ invalid: 1 })
      const checked = await verifyQuorumRecord(Uint8Array.from(r.record), 2)
      expect(checked.dispute).toMatchObject({ other: liar })
    } finally {
      await page.close()
      await c.evaluate(() => window.__peer.setContributing(true))
    }
  })

  it('(g) a link that dies mid-batch: its jobs go to another contributor within seconds', async () => {
    await waitLink(a, ids.b, 'stun')
    await waitLink(a, ids.c, 'turn')
    const router = lab.homes[1]!.router
    // B's home loses its uplink; for a few seconds B's link still looks connected, and jobs go to it.
    lab.exec(router, ['iptables', '-I', 'FORWARD', '1', '-j', 'DROP'])
    const cut = Date.now()
    const inputs = Array.from({ length: 16 }, (_, i) => Array.from(mlpInput(spec, 700 + i)))
    // One replica per job, to whichever contributor is free: B or C.
    const ran = a.evaluate(
      ({ inputs, dims, policy }) =>
        Promise.all(
          inputs.map(async (x) => {
            const r = await window.__peer.submit(
              'mlp-tiny',
              { x: { dtype: 'float32', dims, data: Float32Array.from(x) } },
              { policy },
            )
            return { worker: r.worker, attempts: r.attempts, at: Date.now() }
          }),
        ),
      { inputs, dims: tiny.inputs[0]!.dims, policy: SINGLE },
    )
    try {
      const done = await ran
      const tookMs = Math.max(...done.map((d) => d.at)) - cut
      // B's jobs were reissued: some took a second attempt, all ended, none waited for the 30 s
      // replica timeout. The link is closed once ICE reports it disconnected for 3 s.
      expect(done).toHaveLength(16)
      expect(done.some((d) => d.attempts > 1)).toBe(true)
      expect(done.filter((d) => d.attempts > 1).every((d) => d.worker === ids.c)).toBe(true)
      expect(tookMs).toBeLessThan(20_000)
      await a.waitForFunction(
        (id) => window.__peer.peers().find((p) => p.id === id)?.direct !== true,
        ids.b,
        {
          timeout: 15_000,
        },
      )
    } finally {
      lab.exec(router, ['iptables', '-D', 'FORWARD', '1'])
    }
  })

  it('(h) over plain http from a network address the page says it needs HTTPS, and does not start', async () => {
    const plain = await launchLabBrowser(lab, lab.homes[0]!, { origins: [] }) // no secure-context exemption
    browsers.push(plain)
    const page = await plain.newIsolatedPage()
    const errors: string[] = []
    page.on('pageerror', (e) => errors.push(e.message))
    await page.goto(web.url)
    await page.waitForFunction(() => document.body.dataset.ready, null, { timeout: 15_000 })
    expect(await page.evaluate(() => [globalThis.isSecureContext, document.body.dataset.ready])).toEqual([
      false,
      'error',
    ])
    expect(await page.isVisible('#network-warning')).toBe(true)
    expect(await page.textContent('#network-warning')).toMatch(/not a secure context.*HTTPS/s)
    expect(errors).toEqual([]) // said plainly, not "Cannot read properties of undefined"
  })

  it('(c) across NAT with no ICE servers, the page and submit say there is no path, within seconds', async () => {
    // D (home 1) and E (home 2) on the server without ICE servers, and on a relay of their own.
    const [d, e] = await Promise.all([open(browsers[0]!, bare.url, 'D'), open(browsers[1]!, bare.url, 'E')])
    const eId = await peerId(e)
    expect(await d.isVisible('#network-warning')).toBe(true)
    expect(await d.getAttribute('#network-warning', 'role')).toBe('alert')
    expect(await d.textContent('#network-warning')).toMatch(/other networks will not connect/)
    expect((await d.evaluate(() => window.__peer.status())).iceServers).toBe(0)
    await e.evaluate(() => window.__peer.setContributing(true))
    // Submits once E's advert is in; times it from D's first advert. Then waits for E's next advert and
    // submits again: the failed link is still known to have failed, so the answer comes as fast.
    const r = await d.evaluate(
      async ({ eId, dims }) => {
        const peer = window.__peer
        const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms))
        const known = () => peer.peers().find((p) => p.id === eId)
        while (!known()?.advert.contributing) await sleep(20)
        const x = { x: { dtype: 'float32' as const, dims, data: new Float32Array(16) } }
        const submit = async () => {
          const t0 = performance.now()
          try {
            await peer.submit('mlp-tiny', x, { policy: { redundancy: 1, quorum: 1 } })
            return { name: 'resolved', message: '', ms: performance.now() - t0 }
          } catch (err) {
            const { name, message } = err as Error
            return { name, message, ms: performance.now() - t0 }
          }
        }
        const first = await submit()
        first.ms = performance.now() - (peer.status().firstAdvertMs ?? Number.NaN) // from the first advert
        const seq = known()!.advert.seq
        while (known()!.advert.seq === seq) await sleep(20)
        const stillFailed = known()!.linkError ?? null
        return { first, stillFailed, again: await submit() }
      },
      { eId, dims: tiny.inputs[0]!.dims },
    )
    const { first, again } = r
    console.log(
      `no ICE servers: NoDirectPathError ${first.ms.toFixed(0)} ms after the first advert; ` +
        `${again.ms.toFixed(0)} ms for a submit after E's next advert`,
    )
    expect(first.name, first.message).toBe('NoDirectPathError')
    expect(first.message).toMatch(/no direct path/)
    // Two failed dials (NO_PATH_AFTER, up to 10 s each) and the plan between: far from the 120 s deadline.
    expect(first.ms).toBeLessThan(40_000)
    expect(r.stillFailed, 'a new advert cleared the failed link').not.toBeNull()
    expect(again.name, again.message).toBe('NoDirectPathError')
    expect(again.ms).toBeLessThan(12_000)
    const row = `#peers tr[data-peer="${eId}"]`
    await expect.poll(() => d.textContent(row)).toMatch(/no path/)
    await Promise.all([d, e].map((p) => p.context().close()))
  })
})
