/**
 * The widget as a third-party site embeds it: a host page on another origin (localhost against the
 * app's 127.0.0.1, another port, no COOP/COEP) loads widget.js. Nothing runs before the consent
 * click; after it the widget serves a separate requester tab's jobs and its credit rises by exactly
 * the receipts it signed. The iframe form answers its allow-listed host and ignores everything else.
 */
import { resolve } from 'node:path'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type StaticServer, serveStatic } from '../../scripts/serve.ts'
import { verifyCreditLog } from '../../src/trust/credit-log.ts'
import { launchBrowser, type TestBrowser } from '../helpers/chromium.ts'
import { type Swarm, startSwarm, waitForContributors } from '../helpers/swarm.ts'

const K = 3
type Widget = HTMLElement & {
  peerId?: string
  credit: number
  exportCredits(): Promise<Uint8Array>
  revokeConsent(): Promise<void>
}
const widgetId = (host: Page) => host.evaluate(() => document.querySelector<Widget>('#widget')!.peerId)

describe('embedding on a third-party site', () => {
  let swarm: Swarm
  let hostServer: StaticServer
  let requester: Page
  let host: Page
  let visitor: TestBrowser
  let hostUrl: string
  const warnings: string[] = []

  beforeAll(async () => {
    swarm = await startSwarm({ tabs: 1 })
    requester = swarm.tabs[0]!
    hostServer = await serveStatic({
      root: resolve(import.meta.dirname, '../../demo'),
      isolated: false,
      cors: false,
    })
    const port = new URL(hostServer.url).port
    hostUrl = `http://localhost:${port}/?site=${encodeURIComponent(swarm.web.url)}`
    // The visitor's browser as Chrome ships it. This Debian build turns on third-party-cookie
    // deprecation, which denies all storage to cross-site iframes (the last test shows that case).
    visitor = await launchBrowser({ args: ['--disable-features=TrackingProtection3pcd'] })
    host = await visitor.newPage()
    host.on('console', (m) => {
      if (m.type() === 'warning') warnings.push(m.text())
    })
    host.on('pageerror', (e) => console.error(`[host] ${e.message}`))
    await host.goto(hostUrl)
    await host.waitForFunction(() => customElements.get('peer-compute'), null, { timeout: 30_000 })
    await host.evaluate(() => {
      const w = window as unknown as { __events: { type: string; detail: unknown }[] }
      w.__events = []
      for (const type of ['job-started', 'job-done', 'credit-changed'])
        document
          .querySelector('#widget')!
          .addEventListener(type, (e) => w.__events.push({ type, detail: (e as CustomEvent).detail }))
    })
  })
  afterAll(async () => {
    await visitor?.close()
    await swarm?.stop()
    await hostServer?.close()
  })

  it('starts nothing before the consent click', async () => {
    expect(new URL(host.url()).origin).not.toBe(new URL(swarm.web.url).origin)
    expect(await host.evaluate(() => crossOriginIsolated)).toBe(false)
    await host.waitForTimeout(1500) // give anything that would start a chance to
    const consent = host.locator('#widget button[data-action=consent]')
    expect(await consent.isVisible()).toBe(true)
    expect(await widgetId(host)).toBeUndefined()
    expect(host.workers()).toHaveLength(0) // no inference worker, so no ORT session
    expect(await host.evaluate(() => document.querySelector<Widget>('#widget')!.credit)).toBe(0)
  })

  it('after the click serves a requester tab, and its credit rises by exactly the receipts it signed', async () => {
    await host.locator('#widget button[data-action=consent]').click()
    await host.waitForFunction(() => document.querySelector<Widget>('#widget')!.peerId, null, {
      timeout: 30_000,
    })
    const id = (await widgetId(host))!
    await waitForContributors(requester, [id])
    expect(host.workers().length).toBeGreaterThan(0)
    expect(await host.locator('#widget #single').textContent()).toMatch(/Single-threaded WASM/)
    expect(await host.locator('#widget #single').isVisible()).toBe(true)

    const jobs = await requester.evaluate(
      async ({ id, k }) => {
        const out: string[] = []
        for (let i = 0; i < k; i++) {
          const x = { dtype: 'float32' as const, dims: [1, 16], data: new Float32Array(16).fill(i / 10) }
          const r = await window.__peer.submit('mlp-tiny', { x }, { peer: id, timeoutMs: 30_000 })
          if (r.worker !== id) throw new Error(`computed by ${r.worker}`)
          out.push(r.job)
        }
        return out
      },
      { id, k: K },
    )
    await host.waitForFunction((k) => document.querySelector<Widget>('#widget')!.credit === k, K, {
      timeout: 10_000,
    })
    const log = await verifyCreditLog(
      Uint8Array.from(
        await host.evaluate(async () =>
          Array.from(await document.querySelector<Widget>('#widget')!.exportCredits()),
        ),
      ),
    )
    expect(log).toMatchObject({ count: K, credit: K, workers: [id], signer: id })
    const events = await host.evaluate(
      () =>
        (
          window as unknown as {
            __events: { type: string; detail: { job?: string; ok?: boolean; credit?: number } }[]
          }
        ).__events,
    )
    const done = events.filter((e) => e.type === 'job-done')
    expect(done.map((e) => e.detail.job).sort()).toEqual([...jobs].sort())
    expect(done.every((e) => e.detail.ok)).toBe(true)
    expect(events.filter((e) => e.type === 'job-started')).toHaveLength(K)
    expect(events.filter((e) => e.type === 'credit-changed').at(-1)?.detail.credit).toBe(K)
  })

  it('the iframe answers its allow-listed host and ignores foreign and malformed messages', async () => {
    const frame = host.frame({ url: /embed\.html/ })!
    await frame.waitForFunction(() => document.querySelector('peer-compute'), null, { timeout: 30_000 })
    const ask = (method: string, params?: unknown) =>
      host.evaluate(
        ({ method, params, site }) =>
          new Promise<{ ok: boolean; result?: unknown; error?: { message: string } }>((done, fail) => {
            const id = `t-${Math.random()}`
            const onMessage = (e: MessageEvent) => {
              if (e.origin !== site || e.data?.id !== id) return
              removeEventListener('message', onMessage)
              done(e.data)
            }
            addEventListener('message', onMessage)
            const msg = { type: 'peer-compute', v: 1, id, method, ...(params ? { params } : {}) }
            document.querySelector<HTMLIFrameElement>('#frame')!.contentWindow!.postMessage(msg, site)
            setTimeout(() => fail(new Error(`no reply to ${method}`)), 60_000)
          }),
        { method, params, site: new URL(swarm.web.url).origin },
      )
    const status = await ask('status')
    expect(status).toMatchObject({ ok: true, result: { mode: 'status', crossOriginIsolated: false } })

    // Malformed from the allowed host, then foreign: an opaque-origin frame and a same-origin sibling.
    await host.evaluate((site) => {
      const embed = document.querySelector<HTMLIFrameElement>('#frame')!.contentWindow!
      for (const bad of [
        'hello',
        { type: 'peer-compute', v: 1, id: 'b1', method: 'steal-keys' },
        { type: 'peer-compute', v: 2, id: 'b2', method: 'status' },
      ])
        embed.postMessage(bad, site)
      const evil = `<script>parent.frames[0].postMessage({type:'peer-compute',v:1,id:'evil',method:'exportCredits'},'*')</script>`
      for (const sandbox of [true, false]) {
        const f = document.createElement('iframe')
        if (sandbox) f.sandbox.add('allow-scripts') // opaque origin "null"
        f.srcdoc = evil
        document.body.append(f)
      }
    }, new URL(swarm.web.url).origin)
    await frame.waitForFunction(() => Number(document.body.dataset.ignored) >= 5, null, { timeout: 10_000 })
    expect(warnings.filter((w) => w.includes('[peer-compute embed] ignored'))).toHaveLength(5)
    expect(warnings.join('\n')).toMatch(/from null: origin is not in the allow-list/)
    expect(warnings.join('\n')).toMatch(/not sent by the embedding page/)
    expect(warnings.join('\n')).toMatch(/method must be one of/)

    // Nothing broke: the host still drives it, and a job submitted through it runs on the widget.
    expect(await ask('pause')).toMatchObject({ ok: true, result: { paused: true } })
    expect(await ask('resume')).toMatchObject({ ok: true, result: { paused: false } })
    const id = (await widgetId(host))!
    for (
      let i = 0;
      i < 100 && ((await ask('status')).result as { contributors: number }).contributors < 1;
      i++
    )
      await host.waitForTimeout(200)
    const x = { dtype: 'float32', dims: [1, 16], data: new Float32Array(16).fill(0.5) }
    const r = await ask('submit', {
      model: 'mlp-tiny',
      inputs: { x },
      options: { peer: id, timeoutMs: 30_000 },
    })
    expect(r, JSON.stringify(r.error)).toMatchObject({ ok: true, result: { worker: id } })
    expect(JSON.stringify(r)).not.toMatch(/privateKey/i)
  })

  it('remembers consent per site, and forgets it when revoked', async () => {
    await host.reload()
    await host.waitForFunction(() => document.querySelector<Widget>('#widget')?.peerId, null, {
      timeout: 30_000,
    })
    expect(await host.locator('#widget button[data-action=consent]').isVisible()).toBe(false)
    await host.waitForFunction((k) => document.querySelector<Widget>('#widget')!.credit === k + 1, K, {
      timeout: 10_000,
    })
    await host.evaluate(() => document.querySelector<Widget>('#widget')!.revokeConsent())
    expect(await host.locator('#widget button[data-action=consent]').isVisible()).toBe(true)
    await host.reload()
    await host.waitForFunction(() => customElements.get('peer-compute'), null, { timeout: 30_000 })
    await host.waitForTimeout(1000)
    expect(await widgetId(host)).toBeUndefined()
    expect(await host.locator('#widget button[data-action=consent]').isVisible()).toBe(true)
  })

  it('says so when the browser denies storage to embedded frames', async () => {
    const blocked = await swarm.browser.newIsolatedPage() // third-party storage blocked here
    await blocked.goto(hostUrl)
    const status = blocked.frameLocator('#frame').locator('peer-compute #status')
    await status.filter({ hasText: 'blocks storage in embedded frames' }).waitFor({ timeout: 30_000 })
    await blocked.close()
  })
})
