/** Launches the system Chromium for browser tests: fresh profile per launch, optional WebGPU. */
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core'

const DEFAULT_PATH = '/usr/bin/chromium'

/** CHROMIUM_PATH or /usr/bin/chromium; as root, installs Debian's chromium; otherwise throws. */
export function findChromium(): string {
  const configured = process.env.CHROMIUM_PATH
  if (configured) {
    if (existsSync(configured)) return configured
    throw new Error(`CHROMIUM_PATH=${configured} does not exist`)
  }
  if (existsSync(DEFAULT_PATH)) return DEFAULT_PATH
  if (process.getuid?.() === 0) {
    const install = () => execFileSync('apt-get', ['install', '-y', 'chromium'], { stdio: 'inherit' })
    try {
      install()
    } catch {
      execFileSync('apt-get', ['update'], { stdio: 'inherit' }) // a fresh machine may have no package lists
      install()
    }
    if (existsSync(DEFAULT_PATH)) return DEFAULT_PATH
  }
  throw new Error(
    `Chromium not found at ${DEFAULT_PATH}. Install it (apt-get install chromium) or set CHROMIUM_PATH.`,
  )
}

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

/** Headless Chromium; Playwright gives it a fresh temporary --user-data-dir and removes it on close. */
export async function launchBrowser(opts: { webgpu?: boolean; args?: string[] } = {}): Promise<TestBrowser> {
  const args = [
    '--no-sandbox',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
    ...(opts.webgpu ? WEBGPU_ARGS : []),
    ...(opts.args ?? []),
  ]
  const browser: Browser = await chromium.launch({ executablePath: findChromium(), headless: true, args })
  const context = await browser.newContext()
  return {
    context,
    newPage: () => context.newPage(),
    newIsolatedPage: async () => (await browser.newContext()).newPage(),
    close: () => browser.close(),
  }
}
