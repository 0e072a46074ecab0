/**
 * Peer-to-peer model distribution between two browsers (separate IndexedDB) over WebRTC: a contributor
 * with an empty cache fetches a job's model from the requester, the only holder; a corrupted chunk is
 * fetched again; an interrupted transfer resumes from stored chunks.
 */
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ModelHubEvents } from '../../src/models/hub.ts'
import { mlpForward, mlpInput, mlpWeights } from '../../src/shared/mlp.ts'
import { launchBrowser, type TestBrowser } from '../helpers/chromium.ts'
import { importUrl, serveModels, type TestModel, testModel } from '../helpers/models.ts'
import { peerId, type Swarm, startSwarm, waitForContributors, waitReady } from '../helpers/swarm.ts'

describe('model distribution', () => {
  let swarm: Swarm
  let other: TestBrowser
  let a: Page // requester: the only holder of the test models
  let b: Page // contributor in another browser profile: empty cache, cannot reach the models by URL
  let aId: string
  let bId: string
  let job: TestModel
  let corrupt: TestModel
  let big: TestModel

  beforeAll(async () => {
    job = await testModel('dist-job', { seed: 21, layers: [16, 512, 1024, 8], batch: 1 }) // 2.2 MB
    corrupt = await testModel('dist-corrupt', { seed: 22, layers: [16, 512, 512, 8], batch: 1 }) // 1.1 MB
    big = await testModel('dist-big', { seed: 23, layers: [16, 2048, 1024, 8], batch: 1 }) // 8.5 MB
    swarm = await startSwarm({ tabs: 0, testHooks: true }) // corruptChunk needs the test build
    a = await swarm.openTab('', { testHooks: {} }) // its peer holds this object: a test fills it later
    await serveModels(a, [job, corrupt, big])
    for (const m of [job, corrupt, big]) expect(await importUrl(a, m)).toBe(m.cid)
    other = await launchBrowser()
    b = await other.newPage()
    b.on('pageerror', (e) => console.error(`[b] page error: ${e.message}`))
    await b.goto(swarm.web.url)
    await waitReady(b)
    ;[aId, bId] = [await peerId(a), await peerId(b)]
    await b.evaluate(() => window.__peer.setContributing(true))
    await waitForContributors(a, [bId])
  })
  afterAll(async () => {
    await other?.close()
    await swarm?.stop()
  })

  const transfers = (page: Page) => page.evaluate(() => window.__peer.models.transfers())

  it('a contributor fetches a job model it lacks from the requester', async () => {
    expect(await b.evaluate(() => window.__peer.models.list())).toEqual([])
    const x = mlpInput(job.spec)
    const r = await a.evaluate(
      async ({ cid, peer, x }) => {
        const out = await window.__peer.submit(
          cid,
          { x: { dtype: 'float32', dims: [1, 16], data: Float32Array.from(x) } },
          { peer, timeoutMs: 60_000 },
        )
        return { worker: out.worker, y: Array.from(out.outputs.y!.data as Float32Array) }
      },
      { cid: job.cid, peer: bId, x: Array.from(x) },
    )
    expect(r.worker).toBe(bId)
    const want = mlpForward(job.spec, mlpWeights(job.spec), x)
    for (const [i, v] of r.y.entries()) expect(v).toBeCloseTo(want[i]!, 3)
    const [t] = await transfers(b)
    expect(t).toMatchObject({ cid: job.cid, size: job.bytes.length, resumed: 0, corrupt: 0 })
    expect(Object.keys(t!.providers)).toEqual([aId])
    expect((await b.evaluate(() => window.__peer.models.list())).map((m) => m.cid)).toEqual([job.cid])
    // B's adverts now list the model, so schedulers prefer it.
    await a.waitForFunction(
      ({ b, cid }) => window.__peer.peers().some((p) => p.id === b && p.advert.models.includes(cid)),
      { b: bId, cid: job.cid },
    )
  })

  it('detects a corrupted chunk and fetches it again', async () => {
    await a.evaluate(
      ({ cid }) => {
        let left = 1
        const hooks = (window as unknown as { __peerComputeTestHooks: Record<string, unknown> })
          .__peerComputeTestHooks
        hooks.modelTransfer = { corruptChunk: (c: string, i: number) => c === cid && i === 2 && left-- > 0 }
      },
      { cid: corrupt.cid },
    )
    const t = await b.evaluate(({ cid, a }) => window.__peer.models.fetchFromPeers(cid, { peers: [a] }), {
      cid: corrupt.cid,
      a: aId,
    })
    expect(t).toMatchObject({ cid: corrupt.cid, size: corrupt.bytes.length, corrupt: 1 })
    expect(t.transferred).toBeGreaterThan(corrupt.bytes.length)
    expect(await b.evaluate((cid) => window.__peer.models.has(cid), corrupt.cid)).toBe(true)
  })

  it('resumes an interrupted transfer from the chunks already stored', async () => {
    const first = await b.evaluate(
      async ({ cid, a }) => {
        const hub = window.__peer.models
        const ac = new AbortController()
        const onProgress = (e: ModelHubEvents['progress']) => {
          const p = e.detail
          if (p.cid === cid && p.total && p.loaded > p.total * 0.4) ac.abort()
        }
        hub.events.addEventListener('progress', onProgress)
        try {
          await hub.fetchFromPeers(cid, { peers: [a], signal: ac.signal })
          return 'completed'
        } catch (e) {
          return (e as Error).name
        } finally {
          hub.events.removeEventListener('progress', onProgress)
        }
      },
      { cid: big.cid, a: aId },
    )
    expect(first).toBe('AbortError')
    const t = await b.evaluate(({ cid, a }) => window.__peer.models.fetchFromPeers(cid, { peers: [a] }), {
      cid: big.cid,
      a: aId,
    })
    expect(t.resumed).toBeGreaterThan(big.bytes.length * 0.3)
    expect(t.transferred).toBeLessThan(big.bytes.length * 0.7)
    expect(t.transferred + t.resumed).toBe(big.bytes.length)
    const cids = await b.evaluate(async () => (await window.__peer.models.list()).map((m) => m.cid))
    expect(cids).toContain(big.cid)
  })
})
