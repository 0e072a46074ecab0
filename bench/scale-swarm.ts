/** The scale bench's processes (bench/scale.ts): two peered relays, the peers' child processes, /proc readings. */
import { type ChildProcess, fork } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join, resolve } from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { loadOrCreateKey } from '../node/relay/key.ts'
import { type RelayProcess, startRelayProcess } from '../scripts/relay-process.ts'
import type { FromPeers, PeersStats } from './scale-peers.ts'

export interface Child {
  proc: ChildProcess
  ids: string[]
  /** Peers it has started so far, and of them those holding a relay reservation. */
  started: number
  reserved: number
  stderr: string
  next?: (s: PeersStats) => void
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
export const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)
export const round1 = (x: number) => Math.round(x * 10) / 10

/** Cumulative CPU ms and RSS of a process, from /proc. */
export function procUsage(pid: number): { cpuMs: number; rssBytes: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]
  return { cpuMs: (Number(f[11]) + Number(f[12])) * 10, rssBytes: Number(rss ?? 0) * 1024 }
}

/** Busy CPU ms of the whole machine (all cores), from /proc/stat. */
export function machineBusyMs(): number {
  const [, ...t] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).map(Number)
  return (t.slice(0, 8).reduce((a, b) => a + b, 0) - t[3]! - t[4]!) * 10
}

/** Established TCP connections to a local port (the relay's WebSocket listener), from /proc/net/tcp. */
export function connectionsTo(port: number): number {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .slice(1)
    .filter((l) => {
      const c = l.trim().split(/\s+/)
      return c[1]?.endsWith(hex) && c[3] === '01'
    }).length
}

export function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => ok(port))
    })
    s.on('error', fail)
  })
}

/** Two relays, each started with both in its --peer list (one shared list, as in a deployment). */
export async function startRelays(dir: string, relays: RelayProcess[]): Promise<number[]> {
  const specs = await Promise.all(
    [0, 1].map(async (i) => {
      const keyFile = join(dir, `relay${i}.key`)
      const id = peerIdFromPrivateKey(await loadOrCreateKey(keyFile)).toString()
      const port = await freePort()
      return { keyFile, port, addr: `/ip4/127.0.0.1/tcp/${port}/ws/p2p/${id}` }
    }),
  )
  const peerArgs = specs.flatMap((s) => ['--peer', s.addr])
  for (const s of specs)
    relays.push(await startRelayProcess({ port: s.port, keyFile: s.keyFile, quiet: true, args: peerArgs }))
  return specs.map((s) => s.port)
}

export function spawnPeers(dir: string, k: number, relays: string[]): Child {
  const proc = fork(resolve(import.meta.dirname, 'scale-peers.ts'), [dir, String(k), relays.join(',')], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  })
  const child: Child = { proc, ids: [], started: 0, reserved: 0, stderr: '' }
  proc.stderr?.on('data', (b: Buffer) => {
    child.stderr = (child.stderr + b.toString()).slice(-2000)
  })
  proc.on('message', (m: FromPeers) => {
    if (m.type === 'stats') child.next?.(m)
    if (m.type === 'progress') {
      child.started = m.started
      child.reserved = m.reserved
    }
  })
  return child
}

/** Resolves once the child's peers all hold a relay address; rejects past `ms` or if it fails. */
export function ready(c: Child, ms: number): Promise<number> {
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`not ready within ${Math.round(ms / 1000)} s`)), ms)
    c.proc.on('message', (m: FromPeers) => {
      if (m.type === 'ready') {
        c.ids = m.ids
        c.started = m.ids.length
        c.reserved = m.ids.length
        clearTimeout(timer)
        ok(m.ms)
      } else if (m.type === 'failed') fail(new Error(m.error))
    })
    c.proc.once('exit', (code, sig) =>
      fail(new Error(`peers process exited (${code ?? sig}): ${c.stderr.slice(-500)}`)),
    )
  })
}

export function ask(c: Child): Promise<PeersStats> {
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error('no stats within 30 s')), 30_000)
    c.next = (s) => {
      clearTimeout(timer)
      ok(s)
    }
    c.proc.send('stats')
  })
}

export async function stopChild(c: Child): Promise<void> {
  if (c.proc.exitCode != null || c.proc.signalCode != null) return
  const exited = new Promise((r) => c.proc.once('exit', r))
  if (c.proc.connected) c.proc.send('stop')
  if ((await Promise.race([exited, sleep(20_000).then(() => 'late')])) === 'late') {
    c.proc.kill('SIGKILL') // this child, by its own handle
    await exited
  }
}

/** Snapshots over a window: relays', peer processes' and the machine's CPU; every peer's counters. */
export async function snapshot(children: Child[], relays: RelayProcess[]) {
  const stats = await Promise.all(children.map(ask))
  return {
    at: performance.now(),
    machineMs: machineBusyMs(),
    relays: relays.map((r) => procUsage(r.child.pid!)),
    stats,
    peers: stats.flatMap((s) => s.peers),
  }
}
export type Snap = Awaited<ReturnType<typeof snapshot>>

/** Per peer per minute between two snapshots: gossipsub advert deliveries and their bytes. */
export function advertRate(a: Snap, b: Snap) {
  const min = (b.at - a.at) / 60_000
  const before = new Map(a.peers.map((p) => [p.id, p]))
  const d = b.peers.map((p) => ({
    n: p.adverts - (before.get(p.id)?.adverts ?? 0),
    bytes: p.advertBytes - (before.get(p.id)?.advertBytes ?? 0),
  }))
  return {
    msgsPerMin: round1(mean(d.map((x) => x.n)) / min),
    kibPerMin: round1(mean(d.map((x) => x.bytes)) / 1024 / min),
  }
}

export function windowCpu(a: Snap, b: Snap) {
  const s = (b.at - a.at) / 1000
  const peersMs = b.stats.reduce((t, x, i) => t + x.cpuMs - (a.stats[i]?.cpuMs ?? 0), 0)
  return {
    machineCores: round1((b.machineMs - a.machineMs) / s / 100) / 10,
    peersCores: round1(peersMs / s / 100) / 10,
    relayMsPerS: b.relays.map((r, i) => round1((r.cpuMs - a.relays[i]!.cpuMs) / s)),
  }
}
