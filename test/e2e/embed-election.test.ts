/**
 * One compute tab per browser: two tabs of one browser both switched on, only the elected one
 * contributes; the other shows its status over a BroadcastChannel and takes over within 2 s of the
 * elected tab closing.
 */
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { peerId, type Swarm, startSwarm, waitForContributors } from '../helpers/swarm.ts'

const isLeader = (p: Page) => p.evaluate(() => window.__peer.controls.state().leader === true)
const describeTab = (p: Page) =>
  p.evaluate(() =>
    JSON.stringify({ ...window.__peer.controls.state(), settings: window.__peer.controls.settings() }),
  )

/** Waits until exactly one of the tabs leads; returns [leader, the other]. Says what each tab holds if none does. */
async function electedOf(a: Page, b: Page, timeoutMs = 10_000): Promise<[Page, Page]> {
  const until = Date.now() + timeoutMs
  while (Date.now() < until) {
    const [la, lb] = [await isLeader(a), await isLeader(b)]
    if (la !== lb) return la ? [a, b] : [b, a]
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(
    `no single compute tab after ${timeoutMs} ms: ${await describeTab(a)} / ${await describeTab(b)}`,
  )
}

describe('one compute tab per browser', () => {
  let swarm: Swarm
  let requester: Page
  let x: Page
  let y: Page
  let elected: Page
  let standby: Page

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
    // x asks for the lock first, but which tab wins is the browser's lock service's call.
    ;[elected, standby] = await electedOf(x, y)
    for (const t of [x, y])
      expect(await t.evaluate(() => window.__peer.controls.settings().contribute)).toBe(true)
    const [eId, sId] = [await peerId(elected), await peerId(standby)]
    expect(await standby.evaluate(() => window.__peer.controls.state().holds)).toContain('standby')
    await standby.waitForFunction((id) => window.__peer.controls.computeTab()?.peer === id, eId, {
      timeout: 5000,
    })

    await waitForContributors(requester, [eId])
    const standbyAdvert = await requester.evaluate(
      (id) => window.__peer.peers().find((p) => p.id === id)?.advert,
      sId,
    )
    expect(standbyAdvert?.contributing ?? false).toBe(false)
    expect(await standby.evaluate(() => window.__peer.controls.state().active)).toBe(false)
    // the contributor panel says which tab computes
    await standby.locator('#ctl-state', { hasText: 'compute tab: ' }).waitFor({ timeout: 5000 })
    await elected
      .locator('#ctl-state', { hasText: 'this is the compute tab of this browser' })
      .waitFor({ timeout: 5000 })
    expect([await isLeader(elected), await isLeader(standby)]).toEqual([true, false]) // and it held
  })

  it('hands over to the other tab within 2 s when the elected tab closes', async () => {
    await standby.evaluate(() => {
      const w = window as unknown as { __leaderAt?: number }
      const c = window.__peer.controls
      c.events.addEventListener('change', () => {
        if (c.state().leader && !w.__leaderAt) w.__leaderAt = Date.now()
      })
    })
    const closedAt = Date.now()
    await elected.close()
    await standby.waitForFunction(() => (window as unknown as { __leaderAt?: number }).__leaderAt, null, {
      timeout: 5000,
    })
    const takeoverMs =
      (await standby.evaluate(() => (window as unknown as { __leaderAt: number }).__leaderAt)) - closedAt
    console.log(`compute-tab takeover: ${takeoverMs} ms`)
    expect(takeoverMs).toBeLessThan(2000)

    const id = await peerId(standby)
    await waitForContributors(requester, [id])
    const worker = await requester.evaluate(async (id) => {
      const x = { dtype: 'float32' as const, dims: [1, 16], data: new Float32Array(16).fill(0.25) }
      return (await window.__peer.submit('mlp-tiny', { x }, { peer: id, timeoutMs: 20_000 })).worker
    }, id)
    expect(worker).toBe(id)
  })
})
