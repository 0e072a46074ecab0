/** The built `peer-compute` CLI (test/helpers/cli.ts's CLI) inside a NAT lab home (test/helpers/netlab.ts). */
import { existsSync } from 'node:fs'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CLI } from './cli.ts'
import { type Home, type Lab, type LabProcess, waitFor } from './netlab.ts'

export interface LabContributor {
  id: string
  dir: string
  proc: LabProcess
}

function cliArgv(args: string[]): string[] {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first`)
  return [process.execPath, CLI, ...args]
}

/** `peer-compute contribute <args>` in `home`; resolves once it names its PeerId and its relay is up. */
export async function startLabContributor(lab: Lab, home: Home, args: string[]): Promise<LabContributor> {
  const dir = await mkdtemp(join(tmpdir(), 'pc-lab-node-'))
  const proc = lab.spawn(home.ns, cliArgv(['contribute', '--dir', dir, ...args]))
  const id = await waitFor(
    `contributor in ${home.ns} did not start`,
    () => {
      const out = proc.output()
      return /relay connected/.test(out) ? /contributing as (\S+)/.exec(out)?.[1] : undefined
    },
    proc,
    30_000,
  )
  return { id, dir, proc }
}

/** Runs one CLI command in `home` to its end: its exit status and everything it printed. */
export async function runLabCli(
  lab: Lab,
  home: Home,
  args: string[],
  timeoutMs = 60_000,
): Promise<{ code: number | null; out: string }> {
  const proc = lab.spawn(home.ns, cliArgv(args))
  const timer = setTimeout(() => void proc.stop(), timeoutMs)
  const code = await proc.exited
  clearTimeout(timer)
  return { code, out: proc.output() }
}
