/**
 * A NAT lab from Linux network namespaces, for e2e tests across real NAT (root only):
 *
 *   public (100.64.0.2) ── internet router ─┬─ router 1 (100.64.1.2) ── home 1 (10.1.0.2)
 *                                           ├─ router 2 (100.64.2.2) ── home 2 (10.2.0.2) …
 *
 * Routers masquerade (`nat`), masquerade with --random-fully (`symmetric`: only TURN joins it) or
 * route the home's own addresses (`routed`); each drops unsolicited inbound packets, as real ones do.
 * Nothing links the lab to the host namespace, so no packet leaves it.
 *
 *   const lab = await createLab({ homes: ['nat', 'symmetric'] })
 *   lab.spawn(lab.publicNs, ['node', 'server.js'])
 *   await chromium.launch({ executablePath: lab.chromium(lab.homes[0]!) })
 *   await lab.close()
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { findChromium } from './chromium.ts'
import { findOrInstall } from './debian-tool.ts'

export type HomeKind = 'nat' | 'symmetric' | 'routed'

export interface Home {
  kind: HomeKind
  /** The namespace a home's browser runs in. */
  ns: string
  /** Its address on the home LAN, 10.<n>.0.2. */
  ip: string
  /** The home router's namespace, and its WAN address 100.64.<n>.2 (what STUN sees, for NAT homes). */
  router: string
  wanIp: string
}

export interface LabProcess {
  child: ChildProcess
  pid: number
  /** The last 64 KiB of its stdout and stderr, for failure messages. */
  output(): string
  exited: Promise<number | null>
  /** SIGTERM, then SIGKILL after 3 s. */
  stop(): Promise<void>
}

export interface Lab {
  /** The prefix of every namespace this lab made, `pcl<pid>-<n>-`. */
  id: string
  publicNs: string
  publicIp: string
  internetNs: string
  homes: Home[]
  /** Runs a command in a namespace to completion; throws with its stderr on failure. */
  exec(ns: string, argv: string[], input?: string): string
  /** Starts a long-running process in a namespace; `close()` kills it by PID. */
  spawn(
    ns: string,
    argv: string[],
    opts?: { cwd?: string; env?: NodeJS.ProcessEnv; echo?: string },
  ): LabProcess
  /** A wrapper script that runs Chromium in the home's namespace: use it as Playwright's executablePath. */
  chromium(home: Home): string
  close(): Promise<void>
}

const PREFIX = 'pcl'
const live = new Set<() => void>()
let labCount = 0

/** iptables and coturn come from Debian, installed as root when missing (like Chromium). */
export function ensureLabTools(): { iptablesRestore: string; turnserver: string } {
  if (process.getuid?.() !== 0) throw new Error('the NAT lab needs root (network namespaces, iptables)')
  try {
    return {
      iptablesRestore: findOrInstall({
        env: 'IPTABLES_RESTORE_PATH',
        path: '/usr/sbin/iptables-restore',
        pkg: 'iptables',
        label: 'iptables-restore',
      }),
      turnserver: findOrInstall({
        env: 'TURNSERVER_PATH',
        path: '/usr/bin/turnserver',
        pkg: 'coturn',
        label: 'coturn (turnserver)',
      }),
    }
  } catch (err) {
    throw new Error(`the NAT lab needs Debian's iptables and coturn: ${(err as Error).message}`)
  }
}

const ip = (...args: string[]) =>
  execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Kills what still runs in a namespace (by PID) and deletes it; its veths go with it. */
function deleteNs(ns: string) {
  try {
    for (const pid of ip('netns', 'pids', ns).split('\n').filter(Boolean))
      process.kill(Number(pid), 'SIGKILL')
  } catch {} // already gone
  try {
    ip('netns', 'del', ns)
  } catch {}
}

/** Namespaces left by a lab whose process died without cleaning up (SIGKILL, crash). */
export function removeStaleLabs(): string[] {
  const stale = ip('netns', 'list')
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((ns) => {
      const m = new RegExp(`^${PREFIX}(\\d+)-`).exec(ns)
      return m && !alive(Number(m[1]))
    })
  for (const ns of stale) deleteNs(ns)
  return stale
}

function installExitHooks() {
  if (labCount > 0) return
  const cleanAll = () => {
    for (const clean of live) clean()
  }
  process.once('exit', cleanAll)
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      cleanAll()
      process.kill(process.pid, sig) // our handler was once(): the default action follows
    })
  }
}

export async function createLab(opts: { homes: HomeKind[] }): Promise<Lab> {
  const { iptablesRestore } = ensureLabTools()
  const chromiumPath = findChromium()
  removeStaleLabs()
  installExitHooks()
  const id = `${PREFIX}${process.pid}-${labCount++}-`
  const dir = mkdtempSync(join(tmpdir(), 'pc-netlab-'))
  const made: string[] = []
  const procs = new Set<LabProcess>()
  const cleanSync = () => {
    for (const p of procs) if (p.child.exitCode == null) p.child.kill('SIGKILL')
    for (const ns of [...made].reverse()) deleteNs(ns)
    made.length = 0
    rmSync(dir, { recursive: true, force: true })
  }
  live.add(cleanSync)

  const exec = (ns: string, argv: string[], input?: string) => {
    try {
      return execFileSync('ip', ['netns', 'exec', ns, ...argv], { encoding: 'utf8', input, stdio: 'pipe' })
    } catch (err) {
      const e = err as { stderr?: string; message: string }
      throw new Error(`in ${ns}: ${argv.join(' ')}: ${e.stderr?.trim() || e.message}`)
    }
  }
  const addNs = (name: string, forward: boolean) => {
    const ns = id + name
    ip('netns', 'add', ns)
    made.push(ns)
    // No IPv6: no link-local addresses or DAD, and ICE sees only the IPv4 plan below.
    const v6off =
      'echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6'
    exec(ns, ['sh', '-c', `${v6off}; echo ${forward ? 1 : 0} > /proc/sys/net/ipv4/ip_forward`])
    ip('-n', ns, 'link', 'set', 'lo', 'up')
    return ns
  }
  // Both ends are made inside their namespaces, never in the host's: link names need not be unique.
  const link = (a: string, aIf: string, aAddr: string, b: string, bIf: string, bAddr: string) => {
    ip('link', 'add', aIf, 'netns', a, 'type', 'veth', 'peer', 'name', bIf, 'netns', b)
    for (const [ns, dev, addr] of [
      [a, aIf, aAddr],
      [b, bIf, bAddr],
    ] as const) {
      ip('-n', ns, 'addr', 'add', addr, 'dev', dev)
      ip('-n', ns, 'link', 'set', dev, 'up')
    }
  }

  try {
    const internetNs = addNs('inet', true)
    const publicNs = addNs('pub', false)
    const publicIp = '100.64.0.2'
    link(publicNs, 'eth0', `${publicIp}/24`, internetNs, 'pub', '100.64.0.1/24')
    ip('-n', publicNs, 'route', 'add', 'default', 'via', '100.64.0.1')
    const homes = opts.homes.map((kind, i): Home => {
      const n = i + 1
      const router = addNs(`r${n}`, true)
      const ns = addNs(`h${n}`, false)
      const wanIp = `100.64.${n}.2`
      link(router, 'wan', `${wanIp}/24`, internetNs, `r${n}`, `100.64.${n}.1/24`)
      link(router, 'lan', `10.${n}.0.1/24`, ns, 'eth0', `10.${n}.0.2/24`)
      ip('-n', router, 'route', 'add', 'default', 'via', `100.64.${n}.1`)
      ip('-n', ns, 'route', 'add', 'default', 'via', `10.${n}.0.1`)
      if (kind === 'routed') ip('-n', internetNs, 'route', 'add', `10.${n}.0.0/24`, 'via', wanIp)
      exec(router, [iptablesRestore], routerRules(kind))
      return { kind, ns, ip: `10.${n}.0.2`, router, wanIp }
    })

    const close = async () => {
      await Promise.all([...procs].map((p) => p.stop()))
      live.delete(cleanSync)
      cleanSync()
    }
    return {
      id,
      publicNs,
      publicIp,
      internetNs,
      homes,
      exec,
      spawn: (ns, argv, o = {}) => {
        const p = spawnIn(ns, argv, o)
        procs.add(p)
        return p
      },
      chromium: (home) => {
        const file = join(dir, `chromium-${home.ns}.sh`)
        writeFileSync(file, `#!/bin/sh\nexec ip netns exec ${home.ns} ${chromiumPath} "$@"\n`)
        chmodSync(file, 0o755)
        return file
      },
      close,
    }
  } catch (err) {
    live.delete(cleanSync)
    cleanSync()
    const why = (err as Error).message
    throw new Error(
      `the NAT lab could not be built (it needs root, network namespaces, veth, iptables nat): ${why}`,
    )
  }
}

/** A home router's firewall: outbound opens the way back; nothing unsolicited comes in (forwarded or to it). */
function routerRules(kind: HomeKind): string {
  const nat =
    kind === 'routed'
      ? ''
      : `*nat\n-A POSTROUTING -o wan -j MASQUERADE${kind === 'symmetric' ? ' --random-fully' : ''}\nCOMMIT\n`
  return `${nat}*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A INPUT -i wan -j DROP
-A FORWARD -i lan -o wan -j ACCEPT
-A FORWARD -i wan -o lan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
COMMIT
`
}

function spawnIn(ns: string, argv: string[], o: { cwd?: string; env?: NodeJS.ProcessEnv; echo?: string }) {
  // `ip netns exec` execs in place (no fork), so the child's PID is the command's own.
  const child = spawn('ip', ['netns', 'exec', ns, ...argv], {
    cwd: o.cwd,
    env: o.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let tail = ''
  const take = (b: Buffer) => {
    tail = (tail + b.toString()).slice(-65536)
    if (o.echo) process.stderr.write(`[${o.echo}] ${b}`)
  }
  child.stdout?.on('data', take)
  child.stderr?.on('data', take)
  const exited = new Promise<number | null>((ok) => {
    if (child.exitCode != null) ok(child.exitCode)
    else child.once('exit', (code) => ok(code))
  })
  const pid = child.pid
  if (pid == null) throw new Error(`could not start ${argv[0]} in ${ns}`)
  return {
    child,
    pid,
    output: () => tail,
    exited,
    async stop() {
      if (child.exitCode != null || child.signalCode != null) return
      child.kill('SIGTERM')
      const t = setTimeout(() => child.kill('SIGKILL'), 3000)
      await exited
      clearTimeout(t)
    },
  } satisfies LabProcess
}

/** Polls `probe` until it returns a value; fails with `what` and the process's output on exit or timeout. */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | Promise<T | undefined>,
  proc?: LabProcess,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await probe()
    if (v !== undefined) return v
    const dead = proc && (proc.child.exitCode != null || proc.child.signalCode != null)
    if (dead || Date.now() > deadline) {
      const why = dead ? `exited (${proc.child.exitCode ?? proc.child.signalCode})` : 'timed out'
      throw new Error(`${what}: ${why}${proc ? `\n${proc.output().slice(-4000)}` : ''}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
}
