/** A job's state and counts in words, shared by the jobs table and its drawer. */
import type { Catalog } from '../models/catalog.ts'
import type { JobRecord } from '../store/db.ts'
import { short } from './render.ts'

export interface ReplicaCounts {
  /** Replicas dispatched, reissues included: not refusals, busy retries or replicas lost to a reload. */
  sent: number
  refused: number
  /** Answers outside the agreeing group of a verified job. */
  disagreed: number
  /** Transport failures, timeouts and forgeries. */
  failed: number
  /** Dispatches refused for capacity and retried: not replicas. */
  busy: number
}

export function countReplicas(j: JobRecord): ReplicaCounts {
  const reps = j.replicas ?? []
  const n = (f: (s: string) => boolean) => reps.filter((r) => f(r.status)).length
  const agreed = j.workers?.length ?? 0
  const ok = n((s) => s === 'ok')
  return {
    sent: n((s) => s !== 'lost' && s !== 'refused'),
    refused: n((s) => s === 'refused'),
    disagreed: j.status === 'verified' && ok > agreed ? ok - agreed : 0,
    failed: n((s) => s === 'failed' || s === 'timedOut' || s === 'forged'),
    busy: j.busy ?? 0,
  }
}

/**
 * Dispatches, refusals, disagreements and busy retries, each apart: a busy retry is not a replica,
 * and a refusal is not a disagreement.
 */
export function replicaCounts(j: JobRecord): string {
  const c = countReplicas(j)
  const parts = [`${c.sent} sent`]
  if (c.refused) parts.push(`${c.refused} refused`)
  if (c.disagreed) parts.push(`${c.disagreed} disagreed`)
  if (c.failed) parts.push(`${c.failed} failed`)
  if (c.busy) parts.push(`${c.busy} busy retries`)
  return parts.join(' · ')
}

/** A job's state in words (a mark and a class besides, never colour alone). */
export function statusWords(j: JobRecord): { text: string; cls: '' | 'ok' | 'bad' } {
  const why = j.reason ?? j.error?.message
  switch (j.status) {
    case 'verified':
      return { text: `✓ verified: ${j.workers?.length ?? 1} agree`, cls: 'ok' }
    case 'running':
      return { text: '… running', cls: '' }
    default:
      return { text: `✗ ${j.status}${why ? `: ${why}` : ''}`, cls: 'bad' }
  }
}

export const ms = (v?: number) =>
  v == null ? '—' : v < 1000 ? `${v.toFixed(1)} ms` : `${(v / 1000).toFixed(2)} s`

/** Time of day, with the date when it is not today. */
export function when(t: number): string {
  const d = new Date(t)
  return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString() : d.toLocaleString()
}

export const modelName = (j: JobRecord, catalog: Catalog) =>
  catalog.byCid(j.model)?.name ?? (j.modelName && j.modelName !== j.model ? j.modelName : short(j.model))
