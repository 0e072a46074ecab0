/** A real swarm for end-to-end tests: relay process, static server over dist/ (or dist-test/), Chromium tabs. */
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import type { Page } from 'playwright-core'
import { type RelayProcess, startRelayProcess } from '../../scripts/relay-process.ts'
import { type StaticServer, serveStatic } from '../../scripts/serve.ts'
import { launchBrowser, type TestBrowser } from './chromium.ts'

/** PC_DIST lets parallel work build and test its own copy (vite build --outDir …). */
const DIST = resolve(process.env.PC_DIST ?? resolve(import.meta.dirname, '../../dist'))
/** The test build (`npm run build:test`), the only one that reads `__peerComputeTestHooks`. */
const DIST_TEST = resolve(process.env.PC_DIST_TEST ?? resolve(import.meta.dirname, '../../dist-test'))

export interface TabOptions {
  testHooks?: Record<string, unknown>
  sameBrowser?: boolean
}

export interface Swarm {
  relay: RelayProcess
  web: StaticServer
  browser: TestBrowser
  tabs: Page[]
  /**
   * Opens a tab as a separate browser (own storage and compute election) unless `sameBrowser`.
   * `testHooks` become `globalThis.__peerComputeTestHooks` before the page's scripts run (needs a
   * swarm started with `testHooks: true`).
   */
  openTab(query?: string, opts?: TabOptions): Promise<Page>
  stop(): Promise<void>
}

/**
 * The page must have been built (`npm run build`, which `npm test` runs first). `testHooks` serves the
 * test build dist-test/ instead of dist/, whose bundles ignore the hooks.
 */
export async function startSwarm(opts: {
  tabs: number
  webgpu?: boolean
  testHooks?: boolean
}): Promise<Swarm> {
  const root = opts.testHooks ? DIST_TEST : DIST
  if (!existsSync(resolve(root, 'index.html')))
    throw new Error(`${root} is missing: run \`npm run build\` first`)
  const relay = await startRelayProcess({ quiet: true })
  const web = await serveStatic({ root, relayFile: relay.addrFile })
  const browser = await launchBrowser({ webgpu: opts.webgpu ?? false })
  const tabs: Page[] = []
  const openTab = async (query = '', tabOpts: TabOptions = {}) => {
    if (tabOpts.testHooks && !opts.testHooks)
      throw new Error('testHooks need startSwarm({ testHooks: true })')
    const page = await (tabOpts.sameBrowser ? browser.newPage() : browser.newIsolatedPage())
    if (tabOpts.testHooks) {
      await page.addInitScript((hooks) => {
        ;(globalThis as { __peerComputeTestHooks?: unknown }).__peerComputeTestHooks = hooks
      }, tabOpts.testHooks)
    }
    const n = tabs.length
    page.on('pageerror', (e) => console.error(`[tab ${n}] page error: ${e.message}`))
    await page.goto(`${web.url}${query}`)
    await waitReady(page)
    tabs.push(page)
    return page
  }
  for (let i = 0; i < opts.tabs; i++) await openTab()
  return {
    relay,
    web,
    browser,
    tabs,
    openTab,
    async stop() {
      await browser.close().catch(() => {})
      await web.close()
      await relay.stop()
    },
  }
}

export async function waitReady(page: Page): Promise<void> {
  await page.waitForFunction(() => document.body.dataset.ready, null, { timeout: 30_000 })
  const state = await page.evaluate(() => document.body.dataset.ready)
  if (state !== 'true') throw new Error(`tab failed to start: ${await page.textContent('#peer-id')}`)
}

export const peerId = (page: Page) => page.evaluate(() => window.__peer.id)

/** Waits until `page` sees `ids` as directly connected, contributing peers with a free slot. */
export async function waitForContributors(page: Page, ids: string[], timeoutMs = 60_000): Promise<void> {
  await page.waitForFunction(
    (want) => {
      const peers = window.__peer.peers()
      return want.every((id) =>
        peers.some((p) => p.id === id && p.direct && p.advert.contributing && p.advert.eps.length > 0),
      )
    },
    ids,
    { timeout: timeoutMs, polling: 100 },
  )
}

/** Waits until `page` links to contributor `id` over `path`; a timeout says what the tab knew of it. */
export async function waitLink(page: Page, id: string, path: string, timeoutMs = 30_000) {
  try {
    await waitForContributors(page, [id], timeoutMs)
    await page.waitForFunction(
      ({ id, path }) => window.__peer.peers().find((p) => p.id === id)?.path === path,
      { id, path },
      { timeout: timeoutMs, polling: 100 },
    )
  } catch (err) {
    const known = await page.evaluate((id) => window.__peer.peers().find((p) => p.id === id), id)
    const state = known && { direct: known.direct, path: known.path, linkError: known.linkError }
    throw new Error(`no ${path} link to ${id}: ${(err as Error).message}; peer: ${JSON.stringify(state)}`)
  }
}
