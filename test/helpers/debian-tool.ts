/** Finds a Debian-packaged tool for tests, or installs it as root with apt; otherwise fails clearly, never skips. */
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'

export function findOrInstall(opts: { env: string; path: string; pkg: string; label: string }): string {
  const configured = process.env[opts.env]
  if (configured) {
    if (existsSync(configured)) return configured
    throw new Error(`${opts.env}=${configured} does not exist`)
  }
  if (existsSync(opts.path)) return opts.path
  if (process.getuid?.() === 0) {
    const install = () => execFileSync('apt-get', ['install', '-y', opts.pkg], { stdio: 'inherit' })
    try {
      install()
    } catch {
      execFileSync('apt-get', ['update'], { stdio: 'inherit' }) // a fresh machine may have no package lists
      install()
    }
    if (existsSync(opts.path)) return opts.path
  }
  throw new Error(
    `${opts.label} not found at ${opts.path}. Install it (apt-get install ${opts.pkg}) or set ${opts.env}.`,
  )
}
