/**
 * Contributor controls end to end: pausing, and hiding the tab when visible-only is set, refuse new
 * jobs at once; jobs in flight are handed back ('cancelled') and the requester reissues them elsewhere.
 */
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { peerId, type Swarm, startSwarm, waitForContributors } from '../helpers/swarm.ts'

const N = 6

/** Submits N single-replica mlp-l jobs (≈100 ms each) from the requester; resolves with who ran them. */
const submitBatch = (requester: Page) =>
  requester.evaluate(async (n) => {
    const data = () => Float32Array.from({ length: 448 * 1024 }, (_, i) => Math.sin(i))
    const policy = { redundancy: 1, quorum: 1, adaptive: false, maxAttempts: 4 }
    return Promise.all(
      Array.from({ length: n }, () =>
        window.__peer
          .submit('mlp-l', { x: { dtype: 'float32', dims: [448, 1024], data: data() } }, { policy })
          .then((r) => ({ worker: r.worker, attempts: r.attempts })),
      ),
    )
  }, N)

/** Counts jobs the page handed back; resolves once one is running there. */
async function watchHandBacks(page: Page): Promise<void> {
  await page.evaluate(() => {
    const w = window as unknown as { __handedBack: number }
    w.__handedBack = 0
    window.__peer.controls.events.addEventListener('job-done', (e) => {
      if (e.detail.code === 'cancelled') w.__handedBack++
    })
  })
}
const handedBack = (page: Page) =>
  page.evaluate(() => (window as unknown as { __handedBack: number }).__handedBack)

/** A job sent straight to `target`: 'served' or the rejection message. */
const direct = (requester: Page, target: string) =>
  requester.evaluate(async (id) => {
    const x = { dtype: 'float32' as const, dims: [1, 16], data: new Float32Array(16) }
    return window.__peer.submit('mlp-tiny', { x }, { peer: id, timeoutMs: 15_000 }).then(
      () => 'served',
      (e: Error) => e.message,
    )
  }, target)

describe('contributor controls', () => {
  let swarm: Swarm
  let requester: Page
  let b: Page
  let c: Page
  let ids: { b: string; c: string }

  beforeAll(async () => {
    swarm = await startSwarm({ tabs: 3 })
    ;[requester, b, c] = swarm.tabs as [Page, Page, Page]
    ids = { b: await peerId(b), c: await peerId(c) }
    // One fixed thread: no per-model calibration, and the setting restarts the worker as it should.
    for (const t of [b, c])
      await t.evaluate(async () => {
        await window.__peer.controls.update({ wasmThreads: 1 })
        await window.__peer.setContributing(true)
      })
    await waitForContributors(requester, [ids.b, ids.c])
  })
  afterAll(() => swarm?.stop())

  /** Starts a batch while `other` is paused, so it all goes to `target`; resolves once `target` runs one. */
  async function onlyOn(target: Page, other: Page) {
    await other.evaluate(() => window.__peer.controls.pause())
    await requester.waitForFunction(
      (id) => !window.__peer.peers().find((p) => p.id === id)?.advert.contributing,
      await peerId(other),
      { timeout: 10_000 },
    )
    await waitForContributors(requester, [await peerId(target)])
    const batch = submitBatch(requester)
    await target.waitForFunction(() => window.__peer.controls.running().length > 0, null, {
      timeout: 60_000,
      polling: 10,
    })
    return { batch } // wrapped: returning the promise itself would wait for the whole batch
  }

  it('pausing refuses new jobs at once; running jobs are handed back and finish elsewhere', async () => {
    await watchHandBacks(b)
    const { batch } = await onlyOn(b, c)
    await c.evaluate(() => window.__peer.controls.resume())
    const state = await b.evaluate(() => {
      window.__peer.controls.pause()
      return window.__peer.controls.state()
    })
    expect(state).toMatchObject({ paused: true, active: false })
    expect(await direct(requester, ids.b)).toMatch(/not-contributing.*paused/)
    const ran = await batch
    expect(ran).toHaveLength(N)
    expect(await handedBack(b)).toBeGreaterThan(0)
    for (const r of ran.filter((r) => r.attempts > 1)) expect(r.worker).toBe(ids.c)
    expect(await b.evaluate(() => window.__peer.controls.running().length)).toBe(0)
  })

  it('hiding the tab with visible-only set does the same', async () => {
    await b.evaluate(async () => {
      window.__peer.controls.resume()
      await window.__peer.controls.update({ runWhen: 'visible' })
    })
    await watchHandBacks(b)
    const { batch } = await onlyOn(b, c)
    await c.evaluate(() => window.__peer.controls.resume())
    await b.evaluate(() => {
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' })
      document.dispatchEvent(new Event('visibilitychange'))
    })
    expect(await b.evaluate(() => window.__peer.controls.state().holds)).toContain('hidden')
    expect(await direct(requester, ids.b)).toMatch(/not-contributing.*hidden/)
    const ran = await batch
    expect(ran).toHaveLength(N)
    expect(await handedBack(b)).toBeGreaterThan(0)
    for (const r of ran.filter((r) => r.attempts > 1)) expect(r.worker).toBe(ids.c)
  })
})
