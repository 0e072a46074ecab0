/**
 * The built `peer-compute` CLI (dist-node/cli.mjs, from `npm run build`) as child processes: Node
 * contributors that tests can stop with a signal or kill by PID, and one-shot commands.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

const ROOT = resolve(import.meta.dirname, '../..')
export const CLI = resolve(process.env.PC_CLI ?? join(ROOT, 'dist-node/cli.mjs'))

function needCli(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first`)
}

export interface CliContributor {
  id: string
  dir: string
  child: ChildProcess
  /** Everything it printed so far. */
  output(): string
  /** SIGTERM (hand running jobs back, then exit); resolves with the exit status. */
  stop(signal?: NodeJS.Signals): Promise<number | null>
  /** SIGKILL: gone mid-job, as a crashed machine. */
  kill(): Promise<void>
  /** Removes its data directory (after stop). */
  remove(): Promise<void>
}

/** Starts `peer-compute contribute` and waits until it names its PeerId and the relay is up. */
export async function startCliContributor(o: {
  relay: string
  args?: string[]
  dir?: string
}): Promise<CliContributor> {
  needCli()
  const dir = o.dir ?? (await mkdtemp(join(tmpdir(), 'pc-node-')))
  const child = spawn(
    process.execPath,
    [CLI, 'contribute', '--relay', o.relay, '--dir', dir, ...(o.args ?? [])],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  let out = ''
  child.stdout?.on('data', (b: Buffer) => {
    out += b.toString()
  })
  child.stderr?.on('data', (b: Buffer) => {
    out += b.toString()
  })
  const exited = new Promise<number | null>((ok) => child.once('exit', (code) => ok(code)))
  const deadline = Date.now() + 30_000
  for (;;) {
    const id = /contributing as (\S+)/.exec(out)?.[1]
    if (id && /relay connected/.test(out)) {
      return {
        id,
        dir,
        child,
        output: () => out,
        async stop(signal = 'SIGTERM') {
          if (child.exitCode == null && child.signalCode == null) child.kill(signal)
          return exited
        },
        async kill() {
          if (child.exitCode == null && child.signalCode == null) child.kill('SIGKILL')
          await exited
        },
        remove: () => rm(dir, { recursive: true, force: true }),
      }
    }
    if (child.exitCode != null || Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error(`contributor did not start (exit ${child.exitCode}):\n${out}`)
    }
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** Runs one CLI command to its end. */
export function runCli(
  args: string[],
  timeoutMs = 120_000,
): Promise<{ code: number; out: string; err: string }> {
  needCli()
  return new Promise((ok) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { timeout: timeoutMs, maxBuffer: 16 << 20 },
      (error, out, err) =>
        ok({ code: error ? Number((error as { code?: unknown }).code ?? 1) : 0, out, err }),
    )
  })
}

/** Starts one CLI command; `output()` is what it printed so far, `ended` its exit status (null: a signal). */
export function spawnCli(args: string[]): {
  child: ChildProcess
  output(): string
  ended: Promise<number | null>
} {
  needCli()
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout?.on('data', (b: Buffer) => {
    out += b.toString()
  })
  child.stderr?.on('data', (b: Buffer) => {
    out += b.toString()
  })
  const ended = new Promise<number | null>((ok) => child.once('exit', (code) => ok(code)))
  return { child, output: () => out, ended }
}
