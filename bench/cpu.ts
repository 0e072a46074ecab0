/**
 * CPU time of this process's descendants (Chromium's processes, the relay), by kind, from /proc:
 * where a batch's CPU went, and whether the machine's cores were saturated. Linux only; elsewhere
 * `sample()` returns {}.
 */
import { readdirSync, readFileSync } from 'node:fs'

const TICK_MS = 10 // USER_HZ is 100 on Linux

function kindOf(cmdline: string): string {
  if (cmdline.includes('relay/main.ts')) return 'relay'
  const type = /--type=([a-z-]+)/.exec(cmdline)?.[1]
  if (!type) return cmdline.includes('chrom') ? 'browser process' : 'other'
  if (type === 'utility') return cmdline.includes('network') ? 'network service' : 'utility'
  return type === 'gpu-process' ? 'gpu process' : type
}

/** Cumulative CPU ms of each descendant process, by pid. */
export type Sample = Map<number, { kind: string; ms: number }>

/** `stat` fields from 3 (state) on, of a process or a thread. */
const statFields = (path: string) => {
  const stat = readFileSync(path, 'utf8')
  return {
    name: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')),
    f: stat.slice(stat.lastIndexOf(')') + 2).split(' '),
  }
}
const cpuMs = (f: string[]) => (Number(f[11]) + Number(f[12])) * TICK_MS

interface Proc {
  ppid: number
  ms: number
  kind: string
  cmd: string
}

/** Every descendant of `root`, with its CPU ms, kind and command line. */
function descendants(root: number): Map<number, Proc> {
  const procs = new Map<number, Proc>()
  let pids: string[]
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p))
  } catch {
    return new Map()
  }
  for (const p of pids) {
    try {
      const { f } = statFields(`/proc/${p}/stat`)
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ')
      procs.set(Number(p), { ppid: Number(f[1]), ms: cpuMs(f), kind: kindOf(cmd), cmd })
    } catch {} // exited meanwhile
  }
  const out = new Map<number, Proc>()
  for (const [pid, p] of procs) {
    let a = p.ppid
    while (a > 1 && a !== root) a = procs.get(a)?.ppid ?? 0
    if (a === root && pid !== root) out.set(pid, p)
  }
  return out
}

export function sample(root = process.pid): Sample {
  return new Map([...descendants(root)].map(([pid, p]) => [pid, { kind: p.kind, ms: p.ms }]))
}

/**
 * Cumulative CPU ms of every thread of our descendants, by `pid:tid`, labelled `<kind>/<thread>`
 * (`main` for a process's first thread), prefixed `<role> ` when the process or an ancestor has
 * `marker` in its command line (e.g. the requester's own browser, by its profile folder).
 */
export function threadSample(
  o: { marker?: string; role?: string } = {},
): Map<string, { label: string; ms: number }> {
  const procs = descendants(process.pid)
  const marked = (pid: number): boolean => {
    for (let p = procs.get(pid), a = pid; p; a = p.ppid, p = procs.get(a))
      if (o.marker && p.cmd.includes(o.marker)) return true
    return false
  }
  const out = new Map<string, { label: string; ms: number }>()
  for (const [pid, p] of procs) {
    const role = marked(pid) ? `${o.role ?? 'marked'} ` : ''
    let tids: string[] = []
    try {
      tids = readdirSync(`/proc/${pid}/task`)
    } catch {}
    for (const tid of tids) {
      try {
        const { name, f } = statFields(`/proc/${pid}/task/${tid}/stat`)
        const thread = Number(tid) === pid ? 'main' : name
        out.set(`${pid}:${tid}`, { label: `${role}${p.kind}/${thread}`, ms: cpuMs(f) })
      } catch {}
    }
  }
  return out
}

/**
 * CPU ms per thread label between two thread samples: a thread that started in between counts in
 * full, one that exited in between is missed (Chromium's pool threads come and go).
 */
export function threadsSince(
  before: ReturnType<typeof threadSample>,
  after: ReturnType<typeof threadSample>,
): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [id, t] of after) {
    const ms = t.ms - (before.get(id)?.ms ?? 0)
    if (ms > 0) out[t.label] = (out[t.label] ?? 0) + ms
  }
  return out
}

/**
 * CPU ms per kind between two samples, process by process: one that exited in between is missed
 * (its time since `before` is lost), one that started counts in full.
 */
export function since(before: Sample, after = sample()): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [pid, p] of after) out[p.kind] = (out[p.kind] ?? 0) + p.ms - (before.get(pid)?.ms ?? 0)
  return out
}

const total = (byKind: Record<string, number>) => Object.values(byKind).reduce((a, b) => a + b, 0)

export interface Settled {
  /** Wall ms until our processes used less than `below` cores over one window (or gave up). */
  waitedMs: number
  /** CPU ms our processes spent meanwhile. */
  cpuMs: number
  settled: boolean
}

/**
 * Waits until the tabs are quiet. A tab's first model runs start V8 compiling ORT's 28 MB .wasm with
 * TurboFan on background threads: seconds of CPU per renderer, which would be measured as the swarm's.
 */
export async function settle(o = { below: 0.3, windowMs: 1000, maxMs: 60_000 }): Promise<Settled> {
  const t0 = Date.now()
  const start = sample()
  for (;;) {
    const a = sample()
    await new Promise((r) => setTimeout(r, o.windowMs))
    const b = sample()
    const settled = total(since(a, b)) < o.below * o.windowMs
    if (settled || Date.now() - t0 > o.maxMs)
      return { waitedMs: Date.now() - t0, cpuMs: total(since(start, b)), settled }
  }
}

/** What our processes use with nothing to do: CPU ms per second of wall time, by kind, and in all. */
export async function idleCpu(ms = 10_000): Promise<{ cores: number; msPerS: Record<string, number> }> {
  const before = sample()
  const t0 = Date.now()
  await new Promise((r) => setTimeout(r, ms))
  const used = since(before)
  const wall = Date.now() - t0
  const msPerS = Object.fromEntries(
    Object.entries(used)
      .filter(([, v]) => v > 0)
      .map(([k, v]) => [k, (v / wall) * 1000]),
  )
  return { cores: total(used) / wall, msPerS }
}
