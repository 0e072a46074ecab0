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

/** Cumulative CPU ms per kind of descendant process. */
export function sample(root = process.pid): Record<string, number> {
  const procs = new Map<number, { ppid: number; ms: number; kind: string }>()
  let pids: string[]
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p))
  } catch {
    return {}
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
  const out: Record<string, number> = {}
  for (const [pid, p] of procs) {
    let a = p.ppid
    while (a > 1 && a !== root) a = procs.get(a)?.ppid ?? 0
    if (a === root && pid !== root) out[p.kind] = (out[p.kind] ?? 0) + p.ms
  }
  return out
}

/** CPU ms per kind between two samples (processes that exited in between are missed). */
export const since = (before: Record<string, number>, after = sample()) =>
  Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]))

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
  const total = (s: Record<string, number>) => Object.values(s).reduce((a, b) => a + b, 0)
  const start = total(sample())
  for (;;) {
    const a = total(sample())
    await new Promise((r) => setTimeout(r, o.windowMs))
    const b = total(sample())
    const settled = b - a < o.below * o.windowMs
    if (settled || Date.now() - t0 > o.maxMs) return { waitedMs: Date.now() - t0, cpuMs: b - start, settled }
  }
}
