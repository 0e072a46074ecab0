/**
 * Model import in a real tab with IndexedDB: by URL with progress, by file through the hub view, bad
 * imports (not ONNX, hash mismatch, too large) leave the store unchanged, LRU eviction under a small
 * quota, and models and the quota survive a reload.
 */
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ModelHubEvents } from '../../src/models/hub.ts'
import { importUrl, serveModels, type TestModel, testModel } from '../helpers/models.ts'
import { type Swarm, startSwarm, waitReady } from '../helpers/swarm.ts'

describe('model import', () => {
  let swarm: Swarm
  let page: Page
  let a: TestModel
  let b: TestModel
  let c: TestModel

  const cached = () => page.evaluate(async () => (await window.__peer.models.list()).map((m) => m.cid).sort())
  /** Runs an import in the page and returns the error's name, or 'ok'. */
  const failure = (kind: 'bytes' | 'url' | 'catalog', arg: { data?: number[]; url?: string; cid?: string }) =>
    page.evaluate(
      async ({ kind, arg }) => {
        const hub = window.__peer.models
        try {
          if (kind === 'bytes') await hub.importFile(Uint8Array.from(arg.data ?? []), { name: 'x.onnx' })
          else if (kind === 'url') await hub.importUrl(arg.url!, arg.cid ? { cid: arg.cid } : {})
          else await hub.importCatalog('mlp-tiny')
          return 'ok'
        } catch (e) {
          return `${(e as Error).name}: ${(e as Error).message}`
        }
      },
      { kind, arg },
    )

  beforeAll(async () => {
    // Three ~0.5 MB models: a quota of 1.2 MB holds two of them.
    a = await testModel('imp-a', { seed: 11, layers: [16, 1024, 128], batch: 1 })
    b = await testModel('imp-b', { seed: 12, layers: [16, 1024, 128], batch: 1 })
    c = await testModel('imp-c', { seed: 13, layers: [16, 1024, 128], batch: 1 })
    swarm = await startSwarm({ tabs: 1 })
    page = swarm.tabs[0]!
    await serveModels(page, [a, b, c])
  })
  afterAll(() => swarm?.stop())

  it('imports by URL with progress and stores the model under its CID', async () => {
    const seen = await page.evaluate(async (path) => {
      const events: number[] = []
      const onProgress = (e: ModelHubEvents['progress']) => events.push(e.detail.loaded)
      window.__peer.models.events.addEventListener('progress', onProgress)
      const info = await window.__peer.models.importUrl(path)
      window.__peer.models.events.removeEventListener('progress', onProgress)
      return { cid: info.cid, size: info.size, events }
    }, a.path)
    expect(seen.cid).toBe(a.cid)
    expect(seen.size).toBe(a.bytes.length)
    expect(seen.events.length).toBeGreaterThan(1)
    expect(seen.events.at(-1)).toBe(a.bytes.length)
    expect(await cached()).toEqual([a.cid])
  })

  it('imports a file chosen in the hub view', async () => {
    await page.getByRole('tab', { name: 'Models' }).click()
    await page.getByLabel('or a file').setInputFiles({
      name: 'imp-b.onnx',
      mimeType: 'application/octet-stream',
      buffer: Buffer.from(b.bytes),
    })
    await page.waitForFunction(() => document.querySelector('#hub-result')?.textContent?.startsWith('✓'))
    expect(await page.textContent('#hub-result')).toContain(b.cid)
    await page.waitForSelector(`#hub-cached tr[data-cid="${b.cid}"]`)
    expect(await cached()).toEqual([a.cid, b.cid].sort())
  })

  it('rejects bad imports with named errors and leaves the store unchanged', async () => {
    const before = await cached()
    const html = [...new TextEncoder().encode('<!doctype html><p>not a model</p>')]
    expect(await failure('bytes', { data: html })).toMatch(/^NotOnnxError: x\.onnx is not an ONNX model/)
    expect(await failure('url', { url: c.path, cid: a.cid })).toMatch(/^ModelIntegrityError/)
    // The catalog's own file, corrupted in transit: its bytes no longer hash to the catalog CID.
    await page.route('**/models/mlp-tiny.onnx', async (route) => {
      const res = await route.fetch()
      const body = await res.body()
      body[body.length - 1]! ^= 0xff
      await route.fulfill({ response: res, body })
    })
    expect(await failure('catalog', {})).toMatch(/^ModelIntegrityError/)
    await page.unroute('**/models/mlp-tiny.onnx')
    await page.evaluate(() => window.__peer.models.setMaxModelBytes(100_000))
    expect(await failure('url', { url: c.path })).toMatch(/^ModelTooLargeError/)
    await page.evaluate(() => window.__peer.models.setMaxModelBytes(512 * 1024 * 1024))
    expect(await cached()).toEqual(before)
  })

  it('evicts the least recently used model when the quota is exceeded', async () => {
    await page.evaluate(() => window.__peer.models.setQuota(1_200_000))
    await page.evaluate((cid) => window.__peer.models.get(cid), a.cid) // a is now used more recently than b
    await importUrl(page, c)
    expect(await cached()).toEqual([a.cid, c.cid].sort())
  })

  it('keeps models and the quota across a reload', async () => {
    await page.reload()
    await waitReady(page)
    expect(await cached()).toEqual([a.cid, c.cid].sort())
    expect(await page.evaluate(() => window.__peer.models.quotaBytes)).toBe(1_200_000)
    // the reload lands on the Models view again (the URL keeps it), which lists the cache
    expect(await page.getByRole('tab', { selected: true }).textContent()).toBe('Models')
    await page.waitForSelector(`#hub-cached tr[data-cid="${c.cid}"]`)
  })
})
