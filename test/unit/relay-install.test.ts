/**
 * The relay runs from a production install: `npm ci --omit=dev` plus dist-relay/relay.mjs, no dev
 * dependency at run time. npm ci itself needs the registry (this machine's npm cache lacks some
 * packuments), so the install is rebuilt from the lockfile the way npm ci reads it: every package
 * not flagged `dev`, hard-linked from node_modules into an empty folder. Then the bundle starts
 * there, a client dials it and is offered the relay protocol, and the postinstall script passes
 * without patch-package.
 */
import '../../node/relay/polyfill.ts'
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { identify } from '@libp2p/identify'
import { noise } from '@libp2p/noise'
import { webSockets } from '@libp2p/websockets'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { build } from 'vite'
import { afterAll, describe, expect, it, vi } from 'vitest'
import { WebSocket as NodeWebSocket } from 'ws'

globalThis.WebSocket ??= NodeWebSocket as unknown as typeof WebSocket

const ROOT = resolve(import.meta.dirname, '../..')
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>
  devDependencies: Record<string, string>
  scripts: Record<string, string>
}
const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as {
  packages: Record<string, { dev?: boolean }>
}

/** `@scope/name/sub` → `@scope/name`; `name/sub` → `name`. */
const packageOf = (spec: string) =>
  spec
    .split('/')
    .slice(0, spec.startsWith('@') ? 2 : 1)
    .join('/')

describe('relay production install', () => {
  let dir: string
  let child: ChildProcess | undefined
  afterAll(async () => {
    child?.kill('SIGKILL')
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('dist-relay/relay.mjs runs on the packages npm ci --omit=dev installs', async () => {
    dir = await mkdtemp(join(tmpdir(), 'pc-relay-prod-'))
    await build({
      configFile: join(ROOT, 'vite.relay.config.ts'),
      build: { outDir: join(dir, 'dist-relay') },
    })
    const bundle = await readFile(join(dir, 'dist-relay/relay.mjs'), 'utf8')

    // Every package the bundle imports is a declared dependency (not only present as someone else's).
    const imported = new Set(
      [...bundle.matchAll(/^import\s[^'"]*?["']([^"'.][^"']*)["'];?$/gm)]
        .map((m) => m[1]!)
        .filter((s) => !s.startsWith('node:'))
        .map(packageOf),
    )
    expect(imported.size).toBeGreaterThan(5)
    for (const name of imported)
      expect(pkg.dependencies, `${name} is imported by the relay`).toHaveProperty(name)

    // The install: the lockfile's non-dev packages only (nested ones come with their parents).
    const top = Object.entries(lock.packages)
      .filter(([path, p]) => /^node_modules\/(@[^/]+\/)?[^/]+$/.test(path) && !p.dev)
      .map(([path]) => path)
      .filter((path) => existsSync(join(ROOT, path))) // other platforms' optional binaries
    expect(top).not.toContain('node_modules/tsx')
    expect(top).not.toContain('node_modules/vite')
    execFileSync('cp', ['-al', '--parents', ...top, dir], { cwd: ROOT })
    await copyFile(join(ROOT, 'package.json'), join(dir, 'package.json'))

    // postinstall (patch-package, a dev dependency) must not fail such an install.
    execFileSync('sh', ['-c', pkg.scripts.postinstall!], { cwd: dir, stdio: 'pipe' })

    const addrFile = join(dir, 'relay.json')
    child = spawn(
      process.execPath,
      ['dist-relay/relay.mjs', '--listen', '127.0.0.1:0', '--key-file', 'key', '--addr-file', addrFile],
      { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH } },
    )
    let out = ''
    child.stdout?.on('data', (b: Buffer) => (out += b))
    child.stderr?.on('data', (b: Buffer) => (out += b))
    const relays = await vi.waitFor(
      async () => {
        expect(child?.exitCode, out).toBeNull()
        return JSON.parse(await readFile(addrFile, 'utf8')).relays as string[]
      },
      { timeout: 15_000, interval: 100 },
    )

    const client = await createLibp2p({
      transports: [webSockets()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify() },
    })
    try {
      const conn = await client.dial(multiaddr(relays[0]!))
      await vi.waitFor(
        async () =>
          expect((await client.peerStore.get(conn.remotePeer)).protocols).toContain(
            '/libp2p/circuit/relay/0.2.0/hop',
          ),
        { timeout: 5000 },
      )
    } finally {
      await client.stop()
    }
  }, 60_000)
})
