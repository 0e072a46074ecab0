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

export function sample(root = process.pid): Sample {
  const procs = new Map<number, { ppid: number; ms: number; kind: string }>()
  let pids: string[]
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p))
  } catch {
    return new Map()
  }
  for (const p of pids) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8')
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ') // fields from 3 (state) on
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ')
      procs.set(Number(p), {
        ppid: Number(f[1]),
        ms: (Number(f[11]) + Number(f[12])) * TICK_MS,
        kind: kindOf(cmd),
      })
    } catch {} // exited meanwhile
  }
  const out: Sample = new Map()
  for (const [pid, p] of procs) {
    let a = p.ppid
    while (a > 1 && a !== root) a = procs.get(a)?.ppid ?? 0
    if (a === root && pid !== root) out.set(pid, { kind: p.kind, ms: p.ms })
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
