/** Launches the system Chromium for browser tests: fresh profile per launch, optional WebGPU. */

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core'
import { findOrInstall } from './debian-tool.ts'

/** CHROMIUM_PATH or /usr/bin/chromium; as root, installs Debian's chromium; otherwise throws. */
export const findChromium = (): string =>
  findOrInstall({ env: 'CHROMIUM_PATH', path: '/usr/bin/chromium', pkg: 'chromium', label: 'Chromium' })

/** Headless WebGPU here is SwiftShader's fallback adapter; it needs only this flag (spiked on Chromium 150). */
export const WEBGPU_ARGS = ['--enable-unsafe-webgpu']

export interface TestBrowser {
  /** A tab in the shared context: same storage, Web Locks and BroadcastChannel, as tabs of one browser. */
  newPage(): Promise<Page>
  /** A tab in a fresh context of its own: what a different person's browser looks like. */
  newIsolatedPage(): Promise<Page>
  context: BrowserContext
  close(): Promise<void>
}

const launchArgs = (opts: { webgpu?: boolean; args?: string[] }) => [
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  ...(opts.webgpu ? WEBGPU_ARGS : []),
  ...(opts.args ?? []),
]

/**
 * Headless Chromium; Playwright gives it a fresh temporary --user-data-dir and removes it on close.
 * Its contexts are off the record: IndexedDB lives in memory there, not on disk.
 */
export async function launchBrowser(
  opts: { webgpu?: boolean; args?: string[]; executablePath?: string } = {},
): Promise<TestBrowser> {
  const args = launchArgs(opts)
  const executablePath = opts.executablePath ?? findChromium() // a wrapper, e.g. into a lab namespace
  const browser: Browser = await chromium.launch({ executablePath, headless: true, args })
  const context = await browser.newContext()
  return {
    context,
    newPage: () => context.newPage(),
    newIsolatedPage: async () => (await browser.newContext()).newPage(),
    close: () => browser.close(),
  }
}

/**
 * A tab in a Chromium of its own with an on-disk profile (a fresh temporary folder), as a person's
 * browser is: IndexedDB on disk. Off-the-record contexts keep it in memory, where each write costs
 * more the more the origin holds.
 */
/** The profile folder's name prefix: it is on the command line of that browser's processes. */
export const PROFILE_DIR_PREFIX = 'pc-profile-'

export async function launchProfileTab(
  opts: { args?: string[]; executablePath?: string } = {},
): Promise<{ page: Page; close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), PROFILE_DIR_PREFIX))
  let context: BrowserContext | undefined
  const close = async () => {
    await context?.close().catch(() => {})
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 })
    } catch {} // a leftover temporary folder must not fail the caller
  }
  try {
    context = await chromium.launchPersistentContext(dir, {
      executablePath: opts.executablePath ?? findChromium(),
      headless: true,
      args: launchArgs(opts),
    })
    return { page: context.pages()[0] ?? (await context.newPage()), close }
  } catch (err) {
    await close()
    throw err
  }
}
