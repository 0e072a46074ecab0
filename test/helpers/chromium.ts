/** Launches the system Chromium for browser tests: fresh profile per launch, optional WebGPU. */
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type BrowserContext, chromium, type Page } from 'playwright-core'

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
  newPage(): Promise<Page>
  context: BrowserContext
  close(): Promise<void>
}

export async function launchBrowser(opts: { webgpu?: boolean; args?: string[] } = {}): Promise<TestBrowser> {
  const userDataDir = mkdtempSync(join(tmpdir(), 'peer-compute-chromium-'))
  const args = [
    '--no-sandbox',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
    ...(opts.webgpu ? WEBGPU_ARGS : []),
    ...(opts.args ?? []),
  ]
  try {
    const context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: findChromium(),
      headless: true,
      args,
    })
    return {
      context,
      newPage: () => context.newPage(),
      close: async () => {
        await context.close()
        rmSync(userDataDir, { recursive: true, force: true })
      },
    }
  } catch (err) {
    rmSync(userDataDir, { recursive: true, force: true })
    throw err
  }
}
