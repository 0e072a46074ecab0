/**
 * One compute tab per browser: two tabs of one browser both switched on, only the elected one
 * contributes; the other shows its status over a BroadcastChannel and takes over within 2 s of the
 * elected tab closing.
 */
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { peerId, type Swarm, startSwarm, waitForContributors } from '../helpers/swarm.ts'

const isLeader = (p: Page) => p.evaluate(() => window.__peer.controls.state().leader === true)

describe('one compute tab per browser', () => {
  let swarm: Swarm
  let requester: Page
  let x: Page
  let y: Page

  beforeAll(async () => {
    swarm = await startSwarm({ tabs: 0 })
    requester = await swarm.openTab() // a separate browser
    x = await swarm.openTab('', { sameBrowser: true })
    y = await swarm.openTab('', { sameBrowser: true })
  })
  afterAll(() => swarm?.stop())

  it('elects one contributing tab; the other stands by and shows its status', async () => {
    await x.evaluate(() => window.__peer.setContributing(true)) // the switch is shared: y follows
    await y.waitForFunction(() => window.__peer.controls.settings().contribute, null, { timeout: 10_000 })
    await x.waitForFunction(() => window.__peer.controls.state().leader === true, null, { timeout: 10_000 })
    expect(await isLeader(y)).toBe(false)
    const [xId, yId] = [await peerId(x), await peerId(y)]
    expect(await y.evaluate(() => window.__peer.controls.state().holds)).toContain('standby')
    await y.waitForFunction((id) => window.__peer.controls.computeTab()?.peer === id, xId, { timeout: 5000 })

    await waitForContributors(requester, [xId])
    const yAdvert = await requester.evaluate(
      (id) => window.__peer.peers().find((p) => p.id === id)?.advert,
      yId,
    )
    expect(yAdvert?.contributing ?? false).toBe(false)
    expect(await y.evaluate(() => window.__peer.controls.state().active)).toBe(false)
    // the contributor panel says which tab computes
    await y.locator('#ctl-state', { hasText: 'compute tab: ' }).waitFor({ timeout: 5000 })
    await x
      .locator('#ctl-state', { hasText: 'this is the compute tab of this browser' })
      .waitFor({ timeout: 5000 })
  })

  it('hands over to the other tab within 2 s when the elected tab closes', async () => {
    await y.evaluate(() => {
      const w = window as unknown as { __leaderAt?: number }
      const c = window.__peer.controls
      c.events.addEventListener('change', () => {
        if (c.state().leader && !w.__leaderAt) w.__leaderAt = Date.now()
      })
    })
    const closedAt = Date.now()
    await x.close()
    await y.waitForFunction(() => (window as unknown as { __leaderAt?: number }).__leaderAt, null, {
      timeout: 5000,
    })
    const takeoverMs =
      (await y.evaluate(() => (window as unknown as { __leaderAt: number }).__leaderAt)) - closedAt
    console.log(`compute-tab takeover: ${takeoverMs} ms`)
    expect(takeoverMs).toBeLessThan(2000)

    const yId = await peerId(y)
    await waitForContributors(requester, [yId])
    const worker = await requester.evaluate(async (id) => {
      const x = { dtype: 'float32' as const, dims: [1, 16], data: new Float32Array(16).fill(0.25) }
      return (await window.__peer.submit('mlp-tiny', { x }, { peer: id, timeoutMs: 20_000 })).worker
    }, yId)
    expect(worker).toBe(yId)
  })
})
