/** Starts the relay as a child process (so tests can kill it by PID) and waits for its address. */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

export interface RelayProcess {
  child: ChildProcess
  multiaddrs: string[]
  addrFile: string
  stop(): Promise<void>
}

const ROOT = resolve(import.meta.dirname, '..')

export async function startRelayProcess(
  opts: {
    port?: number
    /** Listen address; default 127.0.0.1. */
    host?: string
    keyFile?: string
    addrFile?: string
    quiet?: boolean
    /** More flags (`--peer …`, limits); see `npm run relay -- --help`. */
    args?: string[]
  } = {},
) {
  const dir = await mkdtemp(join(tmpdir(), 'pc-relay-'))
  const addrFile = opts.addrFile ?? join(dir, 'relay.json')
  await rm(addrFile, { force: true })
  const args = [
    '--import',
    'tsx',
    join(ROOT, 'node/relay/main.ts'),
    '--listen',
    `${opts.host ?? '127.0.0.1'}:${opts.port ?? 0}`,
  ]
  args.push('--key-file', opts.keyFile ?? join(dir, 'key'), '--addr-file', addrFile, ...(opts.args ?? []))
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  const out = opts.quiet ? () => {} : (b: Buffer) => process.stdout.write(b)
  child.stdout?.on('data', out)
  child.stderr?.on('data', (b: Buffer) => process.stderr.write(b))
  const exited = new Promise<number | null>((ok) => child.once('exit', ok))
  const deadline = Date.now() + 20_000
  for (;;) {
    const addrs = await readFile(addrFile, 'utf8').then(
      (s) => JSON.parse(s).relays as string[],
      () => undefined,
    )
    if (addrs?.length) {
      return {
        child,
        multiaddrs: addrs,
        addrFile,
        async stop() {
          if (child.exitCode == null) child.kill('SIGTERM')
          await exited
          await rm(dir, { recursive: true, force: true })
        },
      } satisfies RelayProcess
    }
    if (child.exitCode != null || Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error(`relay did not start (exit ${child.exitCode})`)
    }
    await new Promise((r) => setTimeout(r, 100))
  }
}
