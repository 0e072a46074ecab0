/**
 * The package as a consumer gets it: `npm pack` of the build, unpacked into <tmp>/app/node_modules,
 * its dependencies provided without the registry (the lockfile's non-dev packages hard-linked from
 * ./node_modules, as test/unit/relay-install.test.ts does) and its bin linked as npm links it. Then
 * the packed `peer-compute` runs a relay, two contributors and a verified job; the packed entries
 * import in Node and Chromium; a consumer's TypeScript checks against the packed declarations.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join, resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { type StaticServer, serveStatic } from '../../scripts/serve.ts'
import { launchBrowser, type TestBrowser } from '../helpers/chromium.ts'

const ROOT = resolve(import.meta.dirname, '../..')
const BUILT = ['dist/peer-compute.js', 'dist/widget.js', 'dist-node/cli.mjs', 'dist-node/index.mjs']
const TYPES = ['dist-types/src/index.d.ts', 'dist-types/src/widget/index.d.ts', 'dist-types/node/index.d.ts']
const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as {
  packages: Record<string, { dev?: boolean }>
}

/** What the consumer's TypeScript must accept: each entry's main calls, typed (not `any`). */
const CONSUMER = `import { createPeer, errors, type Peer, type QuorumCheck, type Tensor, verifyQuorumRecord } from 'peer-compute'
import { createNodePeer, type NodePeer, type NodePeerOptions } from 'peer-compute/node'
import type { PeerComputeElement } from 'peer-compute/widget'

const options: NodePeerOptions = { dir: 'data', relays: ['/ip4/127.0.0.1/tcp/9090/ws'], contribute: true }
export async function run(record: Uint8Array): Promise<string[]> {
  const node: NodePeer = await createNodePeer(options)
  const tab: Peer = await createPeer({ contribute: false })
  const x: Tensor = { dtype: 'float32', dims: [1, 16], data: new Float32Array(16) }
  const r = await node.submit('mlp-tiny', { x }, { policy: { redundancy: 2, quorum: 2 } })
  const check: QuorumCheck = await verifyQuorumRecord(record)
  if (!r.outputs.y) throw new errors.JobFailedError('no output y')
  await tab.stop()
  return [...r.workers, ...check.workers, node.dir]
}
export const peerIdOf = (el: PeerComputeElement): string | undefined => el.peerId
// @ts-expect-error: dir is a path, so the declarations are real types, not any
export const wrong = createNodePeer({ dir: 1 })
`

describe('the packed package', () => {
  let tmp: string
  let app: string
  let pkgDir: string
  let bin: string
  let env: NodeJS.ProcessEnv
  const children: ChildProcess[] = []
  let browser: TestBrowser | undefined
  let server: StaticServer | undefined

  /** The packed `peer-compute` (its bin link) as a child process; `output()` is all it printed. */
  const start = (args: string[]) => {
    const child = spawn(bin, args, { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'] })
    children.push(child)
    let out = ''
    child.stdout?.on('data', (b: Buffer) => (out += b))
    child.stderr?.on('data', (b: Buffer) => (out += b))
    return { child, output: () => out }
  }
  const run = (args: string[], timeout = 60_000) =>
    new Promise<{ code: number; out: string; err: string }>((ok) => {
      const child = execFile(bin, args, { cwd: app, env, timeout }, (error, out, err) =>
        ok({ code: error ? Number((error as { code?: unknown }).code ?? 1) : 0, out, err }),
      )
      children.push(child)
    })

  beforeAll(async () => {
    for (const f of [...BUILT, ...TYPES])
      if (!existsSync(join(ROOT, f))) throw new Error(`${f} is missing: run \`npm run build\` first`)
    tmp = await mkdtemp(join(tmpdir(), 'pc-package-'))
    app = join(tmp, 'app')
    pkgDir = join(app, 'node_modules/peer-compute')
    await mkdir(pkgDir, { recursive: true })
    const packed = JSON.parse(
      execFileSync('npm', ['pack', '--pack-destination', tmp, '--ignore-scripts', '--json'], {
        cwd: ROOT,
        encoding: 'utf8',
      }),
    ) as { filename: string; files: { path: string }[] }[]
    const files = packed[0]!.files.map((f) => f.path)
    expect(files.filter((f) => /^(src|test|dist-test|bench|node|workers|patches)\//.test(f))).toEqual([])
    expect(files).toEqual(expect.arrayContaining([...BUILT, ...TYPES, 'LICENSE', 'README.md']))
    execFileSync('tar', ['-xzf', join(tmp, packed[0]!.filename), '-C', pkgDir, '--strip-components=1'])

    // The dependencies npm would install: the lockfile's non-dev packages (nested ones come with
    // their parents), plus @types/node, which a TypeScript consumer has.
    const top = Object.entries(lock.packages)
      .filter(([path, p]) => /^node_modules\/(@[^/]+\/)?[^/]+$/.test(path) && !p.dev)
      .map(([path]) => path)
      .filter((path) => existsSync(join(ROOT, path))) // other platforms' optional binaries
    expect(top).not.toContain('node_modules/vite')
    const typesNode = ['node_modules/@types/node', 'node_modules/undici-types'].filter(
      (p) => !top.includes(p),
    )
    execFileSync('cp', ['-al', '--parents', ...top, ...typesNode, app], { cwd: ROOT })
    // The bin as npm links it: a symlink, its target made executable; `node` found on PATH by the shebang.
    const pkg = JSON.parse(await readFile(join(pkgDir, 'package.json'), 'utf8')) as {
      bin: Record<string, string>
      scripts: Record<string, string>
    }
    await mkdir(join(app, 'node_modules/.bin'))
    bin = join(app, 'node_modules/.bin/peer-compute')
    await symlink(join('..', 'peer-compute', pkg.bin['peer-compute']!), bin)
    await chmod(join(pkgDir, pkg.bin['peer-compute']!), 0o755)
    env = { PATH: [dirname(process.execPath), process.env.PATH].join(delimiter), HOME: tmp }
    await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }))

    // Its postinstall, as npm runs it in a consumer's node_modules: nothing to patch there, so it
    // must not run patch-package even where one can be found.
    const post = execFileSync('sh', ['-c', `${pkg.scripts.postinstall!} 2>&1`], {
      cwd: pkgDir,
      encoding: 'utf8',
      env: {
        ...env,
        NODE_PATH: join(ROOT, 'node_modules'),
        PATH: [join(ROOT, 'node_modules/.bin'), env.PATH].join(delimiter),
      },
    })
    expect(post).toBe('')
  }, 60_000)

  afterAll(async () => {
    for (const c of children) {
      if (c.exitCode == null && c.signalCode == null) {
        const exited = new Promise((r) => c.once('exit', r))
        c.kill('SIGKILL')
        await exited
      }
    }
    await browser?.close()
    await server?.close()
    if (tmp) await rm(tmp, { recursive: true, force: true })
  })

  it('runs its bin: a relay, two contributors and a submitted job that verifies', async () => {
    const help = await run(['--help'])
    expect(help.code, help.err).toBe(0)
    expect(help.out).toMatch(/^usage: peer-compute <command>/)

    const addrFile = join(tmp, 'relay.json')
    const relay = start([
      'relay',
      '--listen',
      '127.0.0.1:0',
      '--key-file',
      join(tmp, 'relay.key'),
      '--addr-file',
      addrFile,
    ])
    const addr = await vi.waitFor(
      async () => {
        expect(relay.child.exitCode, relay.output()).toBeNull()
        return (JSON.parse(await readFile(addrFile, 'utf8')) as { relays: string[] }).relays[0]!
      },
      { timeout: 15_000, interval: 100 },
    )
    const ids = await Promise.all(
      ['c1', 'c2'].map(async (name) => {
        const c = start(['contribute', '--relay', addr, '--dir', join(tmp, name)])
        return vi.waitFor(
          () => {
            expect(c.child.exitCode, c.output()).toBeNull()
            const id = /contributing as (\S+)/.exec(c.output())?.[1]
            expect(c.output()).toMatch(/relay connected/)
            return id!
          },
          { timeout: 30_000, interval: 100 },
        )
      }),
    )
    const submitted = await run([
      'submit',
      'mlp-tiny',
      '--random',
      '--json',
      '--relay',
      addr,
      '--dir',
      join(tmp, 'requester'),
      '--redundancy',
      '2',
      '--quorum',
      '2',
      '--no-adaptive',
    ])
    expect(submitted.code, `${submitted.out}\n${submitted.err}`).toBe(0)
    const outcome = JSON.parse(submitted.out.trim().split('\n').at(-1)!) as {
      workers: string[]
      outputs: Record<string, { dims: number[] }>
    }
    expect(new Set(outcome.workers)).toEqual(new Set(ids))
    expect(outcome.outputs.y?.dims).toEqual([1, 8])
  })

  it("carries our patched @libp2p/webrtc in its Node bundles: a consumer's own copy is unpatched", async () => {
    for (const file of ['dist-node/cli.mjs', 'dist-node/index.mjs']) {
      const code = await readFile(join(pkgDir, file), 'utf8')
      // The dialler's wait for its init channel (patches/@libp2p+webrtc+6.0.33.patch).
      expect(code, file).toContain('await pEvent(channel, ["open", "close"]')
      expect(code, file).not.toMatch(/^import .* from ["']@libp2p\/webrtc["']/m)
    }
  })

  it('peer-compute/node imports in Node', async () => {
    await writeFile(
      join(app, 'check.mjs'),
      "const m = await import('peer-compute/node')\nconsole.log(JSON.stringify(Object.keys(m).sort()))\n",
    )
    const keys = JSON.parse(
      execFileSync(process.execPath, ['check.mjs'], { cwd: app, env, encoding: 'utf8' }),
    )
    expect(keys).toEqual(
      expect.arrayContaining(['createNodePeer', 'createNodeEngine', 'createFileStore', 'verifyQuorumRecord']),
    )
  })

  it('peer-compute loads in Chromium, with every asset it references packed', async () => {
    // The module, its worker, onnxruntime's bundles and .wasm: each built file it names is packed.
    // (Names not in the build are plain strings, such as onnxruntime's own unhashed .wasm names.)
    const dist = join(pkgDir, 'dist')
    const seen = new Set<string>()
    const walk = async (file: string) => {
      const text = await readFile(file, 'latin1')
      for (const [name] of text.matchAll(/[\w.-]+-[\w-]{8}\.(?:js|wasm)\b/g)) {
        if (seen.has(name) || !existsSync(join(ROOT, 'dist/assets', name))) continue
        seen.add(name)
        expect(existsSync(join(dist, 'assets', name)), `${name}, referenced by ${file}`).toBe(true)
        if (name.endsWith('.js')) await walk(join(dist, 'assets', name))
      }
    }
    await walk(join(dist, 'peer-compute.js'))
    expect([...seen].some((n) => n.startsWith('inference.worker-'))).toBe(true)
    expect([...seen].filter((n) => n.endsWith('.wasm'))).toHaveLength(2)

    server = await serveStatic({ root: dist })
    browser = await launchBrowser()
    const page = await browser.newPage()
    // A page that imports it as a consumer's module would (a script, not page.evaluate, which the
    // test runner's transform would rewrite).
    const body = `<!doctype html><script type="module">
      import * as m from './peer-compute.js'
      window.exported = Object.fromEntries(Object.entries(m).map(([k, v]) => [k, typeof v]))
    </script>`
    await page.route('**/consumer.html', (r) => r.fulfill({ contentType: 'text/html', body }))
    const errors: string[] = []
    page.on('pageerror', (e) => errors.push(e.message))
    await page.goto(`${server.url}/consumer.html`)
    const exported = await (
      await page.waitForFunction(() => (window as { exported?: Record<string, string> }).exported, null, {
        timeout: 15_000,
      })
    ).jsonValue()
    expect(errors).toEqual([])
    expect(exported).toMatchObject({
      createPeer: 'function',
      errors: 'object',
      verifyQuorumRecord: 'function',
      verifyReceipt: 'function',
      verifyCreditLog: 'function',
    })
  })

  it("a consumer's TypeScript checks against the packed declarations (bundler and node16)", async () => {
    await writeFile(join(app, 'consumer.ts'), CONSUMER)
    await writeFile(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2023',
          strict: true,
          noEmit: true,
          lib: ['ES2023', 'DOM', 'DOM.Iterable'],
          types: ['node'],
        },
        files: ['consumer.ts'],
      }),
    )
    const tsc = join(ROOT, 'node_modules/.bin/tsc')
    for (const [module, resolution] of [
      ['preserve', 'bundler'],
      ['node16', 'node16'],
    ] as const) {
      const r = await new Promise<{ code: number; out: string }>((ok) =>
        execFile(tsc, ['-p', app, '--module', module, '--moduleResolution', resolution], { env }, (e, out) =>
          ok({ code: e ? Number((e as { code?: unknown }).code ?? 1) : 0, out }),
        ),
      )
      expect(r.code, `${resolution}:\n${r.out}`).toBe(0)
    }
  })
})
