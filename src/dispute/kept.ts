/**
 * Traces of jobs a requester asked to have traced (JobBody.trace), kept so that a dispute about one
 * commits without running the model again: the work a dispute costs moves into the job, where the
 * trace is the job's own run. Bounded per trace, in all, and in time; the oldest go first.
 */
import { type NamedTensors, tensorsByteLength } from '../shared/tensor.ts'

export interface KeptTraces {
  /** Keeps `trace` under `key` unless it is over the per-trace cap; older ones make room. */
  put(key: string, trace: NamedTensors): boolean
  /** The trace under `key`, taken out (a commitment then holds it), or undefined. */
  take(key: string): NamedTensors | undefined
  /** Bytes kept now. */
  bytes(): number
  clear(): void
}

export interface KeptTracesOptions {
  maxTraceBytes: number
  maxTotalBytes: number
  ttlMs: number
  now?: () => number
}

export const keptKey = (requester: string, model: string, input: string) => `${requester} ${model} ${input}`

export function createKeptTraces(o: KeptTracesOptions): KeptTraces {
  const now = o.now ?? Date.now
  // Insertion order is age: the first is the oldest.
  const kept = new Map<string, { trace: NamedTensors; bytes: number; expires: number }>()
  let total = 0
  const drop = (key: string) => {
    total -= kept.get(key)?.bytes ?? 0
    kept.delete(key)
  }
  const purge = () => {
    for (const [k, v] of kept) if (v.expires <= now()) drop(k)
  }
  return {
    put(key, trace) {
      purge()
      drop(key)
      const bytes = tensorsByteLength(trace)
      if (bytes > o.maxTraceBytes) return false
      while (total + bytes > o.maxTotalBytes && kept.size > 0) drop(kept.keys().next().value!)
      kept.set(key, { trace, bytes, expires: now() + o.ttlMs })
      total += bytes
      return true
    },
    take(key) {
      purge()
      const t = kept.get(key)?.trace
      drop(key)
      return t
    },
    bytes: () => {
      purge()
      return total
    },
    clear() {
      kept.clear()
      total = 0
    },
  }
}
