/**
 * A requester's pending states (pending/) and inputs (inputs/), written by the browser's own
 * group-commit queue (src/store/pending.ts jobStateQueue) over a commit of files, so deferral,
 * collapsing and clean-up behave exactly alike. One commit is one batch of files, renamed
 * inputs, pending states, records, then deletes: a crash midway leaves a state the journal already
 * meets after a reload (a state beside its final record), never a running record without its state.
 */
import type { Store } from '../../src/store/db.ts'
import { type JobStateCommit, jobStateQueue } from '../../src/store/pending.ts'
import {
  type JobInputsRecord,
  type JobRecord,
  ownJobBytes,
  type PendingRecord,
} from '../../src/store/schema.ts'
import { encodeValue } from './codec.ts'
import { type Ctx, closedError } from './context.ts'
import { type FileOp, writeBatch } from './files.ts'
import { checkId, type JobTables, readRecord } from './jobs.ts'

type Name = 'jobs' | 'pending' | 'jobInputs'

interface Op {
  name: Name
  id: string
  /** Encoded value to put, or null to delete. */
  data: Uint8Array | null
  value?: unknown
}

/** Crash order: what a reader may meet alone is written first (see the file comment). */
const RANK: Record<Name, [put: number, del: number]> = { jobInputs: [0, 4], pending: [1, 3], jobs: [2, 5] }

export type PendingPart = Pick<
  Store,
  'saveJobState' | 'flushJobStates' | 'discardJobState' | 'listPending' | 'getJobInputs'
>

export function pendingFiles(ctx: Ctx, t: JobTables): PendingPart {
  const folder = { jobs: 'jobs', pending: 'pending', jobInputs: 'inputs' } as const
  const fileOp = (op: Op): FileOp => {
    if (op.name === 'jobs' && op.data) return t.putOp(op.value as JobRecord, op.data)
    const done =
      op.name === 'pending'
        ? () => (op.data ? t.pendingIds.add(op.id) : t.pendingIds.delete(op.id))
        : op.name === 'jobs'
          ? () => t.history.delete(op.id)
          : undefined
    return { path: t.file(folder[op.name], op.id), data: op.data, ...(done ? { done } : {}) }
  }

  async function apply(ops: Op[], sync: boolean): Promise<void> {
    const last = new Map<string, Op>() // the last operation on each record wins
    for (const op of ops) {
      const k = `${op.name}\n${op.id}`
      last.delete(k)
      last.set(k, op)
    }
    const rank = (op: Op) => RANK[op.name][op.data ? 0 : 1]
    await writeBatch([...last.values()].sort((a, b) => rank(a) - rank(b)).map(fileOp), { sync })
  }

  // The values are encoded before anything is written: one that cannot be stored fails the commit
  // at once, as IDB's put does, and nothing of it lands.
  const commit: JobStateCommit = (entries, deletes, relaxed) => {
    if (ctx.closed()) return Promise.reject(closedError())
    const ops: Op[] = []
    const put = (name: Name, value: { id: string }) => {
      checkId(value)
      ops.push({ name, id: value.id, data: encodeValue(value), value })
    }
    try {
      for (const id of deletes)
        ops.push({ name: 'pending', id, data: null }, { name: 'jobInputs', id, data: null })
      for (const e of entries) {
        put('jobs', ownJobBytes(e.job))
        if (e.pending) put('pending', e.pending)
        if (e.inputs && e.pending) put('jobInputs', e.inputs)
      }
    } catch (err) {
      return Promise.reject(err)
    }
    return ctx.run('jobs', () => apply(ops, !relaxed))
  }
  return {
    ...jobStateQueue(commit),
    listPending: () =>
      ctx.run('jobs', async () => {
        const out: PendingRecord[] = []
        for (const id of t.pendingIds) {
          const rec = await readRecord<PendingRecord>(t.file('pending', id))
          if (rec && Number.isFinite(rec.createdAt)) out.push(rec) // else not in the createdAt index
        }
        return out.sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      }),
    getJobInputs: (id) => ctx.run('jobs', () => readRecord<JobInputsRecord>(t.file('inputs', id))),
  }
}
