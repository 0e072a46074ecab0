/** The app's servers in the lab's public namespace, and Chromium in a home: the parts of a swarm across NAT. */
import { mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { launchBrowser, launchProfileTab, type TestBrowser } from './chromium.ts'
import type { Home, Lab, LabProcess } from './netlab.ts'
import { waitFor } from './netlab.ts'

const ROOT = resolve(import.meta.dirname, '../..')
const tsx = (script: string) => [process.execPath, '--import', 'tsx', join(ROOT, script)]

export interface LabRelay {
  proc: LabProcess
  multiaddrs: string[]
  /** `{ relays: [...] }`, as scripts/relay-process.ts writes it. */
  addrFile: string
  stop(): Promise<void>
}

/** A relay on the public address; ports must differ between relays (default 9090). */
export async function startLabRelay(
  lab: Lab,
  opts: { port?: number; args?: string[] } = {},
): Promise<LabRelay> {
  const dir = mkdtempSync(join(tmpdir(), 'pc-lab-relay-'))
  const addrFile = join(dir, 'relay.json')
  const argv = [...tsx('node/relay/main.ts'), '--host', lab.publicIp, '--port', String(opts.port ?? 9090)]
  argv.push('--key-file', join(dir, 'key'), '--addr-file', addrFile, ...(opts.args ?? []))
  const proc = lab.spawn(lab.publicNs, argv, { cwd: ROOT })
  const multiaddrs = await waitFor(
    'relay did not start',
    () => {
      try {
        return JSON.parse(readFileSync(addrFile, 'utf8')).relays as string[]
      } catch {
        return undefined
      }
    },
    proc,
  )
  return { proc, multiaddrs, addrFile, stop: () => proc.stop() }
}

export interface LabWeb {
  proc: LabProcess
  /** `http://<public ip>:<port>` (no slash): pass it to launchLabBrowser's `origins`. */
  origin: string
  url: string
  stop(): Promise<void>
}

/** ICE servers the lab's static server puts into peer-compute.json; TURN credentials minted per `?peer=`. */
export interface LabIce {
  stun?: string[]
  turn?: string[]
  /** coturn's static-auth-secret (Coturn.secret); needed with `turn`. */
  secret?: string
  ttlS?: number
}

/** scripts/serve.ts over `root` on the public address; `configFile` is served as /peer-compute.json. */
export async function startLabWeb(
  lab: Lab,
  opts: { root: string; configFile?: string; port?: number; ice?: LabIce },
): Promise<LabWeb> {
  const argv = [...tsx('test/helpers/serve-main.ts'), '--root', opts.root, '--host', lab.publicIp]
  argv.push('--port', String(opts.port ?? 8080))
  if (opts.configFile) argv.push('--relay-file', opts.configFile)
  for (const u of opts.ice?.stun ?? []) argv.push('--stun-url', u)
  for (const u of opts.ice?.turn ?? []) argv.push('--turn-url', u)
  if (opts.ice?.secret) argv.push('--turn-secret', opts.ice.secret)
  if (opts.ice?.ttlS) argv.push('--turn-ttl', String(opts.ice.ttlS))
  const proc = lab.spawn(lab.publicNs, argv, { cwd: ROOT })
  const url = await waitFor(
    'static server did not start',
    () => /listening (\S+)/.exec(proc.output())?.[1],
    proc,
  )
  return { proc, origin: new URL(url).origin, url, stop: () => proc.stop() }
}

/** Writes a peer-compute.json (atomically: the server re-reads it per request). */
export function writeLabConfig(
  file: string,
  config: { relays: string[]; iceServers?: RTCIceServer[] },
): void {
  writeFileSync(`${file}.tmp`, JSON.stringify(config))
  renameSync(`${file}.tmp`, file)
}

/**
 * Chromium inside a home's namespace. Pages on plain http from `origins` count as secure contexts
 * (WebCrypto, Web Locks), as they would on https.
 */
export const labBrowserArgs = (origins: string[]) =>
  origins.length ? [`--unsafely-treat-insecure-origin-as-secure=${origins.join(',')}`] : []

export function launchLabBrowser(
  lab: Lab,
  home: Home,
  opts: { origins?: string[]; webgpu?: boolean; args?: string[] } = {},
): Promise<TestBrowser> {
  const args = [...labBrowserArgs(opts.origins ?? []), ...(opts.args ?? [])]
  return launchBrowser({ webgpu: opts.webgpu, args, executablePath: lab.chromium(home) })
}

/** A tab with an on-disk profile (launchProfileTab) inside a home's namespace. */
export function launchLabProfileTab(
  lab: Lab,
  home: Home,
  opts: { origins?: string[]; args?: string[] } = {},
) {
  const args = [...labBrowserArgs(opts.origins ?? []), ...(opts.args ?? [])]
  return launchProfileTab({ args, executablePath: lab.chromium(home) })
}
