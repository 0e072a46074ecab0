/**
 * A requester's pending states (pending/) and inputs (inputs/), written by the browser's own
 * group-commit queue (src/store/pending.ts) over a stand-in for the few idb calls it makes, so
 * deferral, collapsing and clean-up behave exactly alike. One commit is one batch of files, renamed
 * inputs, pending states, records, then deletes: a crash midway leaves a state the journal already
 * meets after a reload (a state beside its final record), never a running record without its state.
 */
import type { Store } from '../../src/store/db.ts'
import { pendingAccess } from '../../src/store/pending.ts'
import type { Db, JobInputsRecord, JobRecord, PendingRecord } from '../../src/store/schema.ts'
import { encodeValue } from './codec.ts'
import { type Ctx, closedError } from './context.ts'
import { type FileOp, writeBatch } from './files.ts'
import { checkId, type JobTables, readRecord } from './jobs.ts'

type Name = 'jobs' | 'pending' | 'jobInputs'

/** The part of idb's API that pendingAccess uses. */
interface DbSubset {
  transaction(
    names: Name[],
    mode: 'readwrite',
    opts?: { durability?: 'default' | 'relaxed' | 'strict' },
  ): {
    objectStore(name: Name): { put(value: unknown): Promise<unknown>; delete(id: string): Promise<unknown> }
    done: Promise<void>
    abort(): void
  }
  getAllFromIndex(store: 'pending', index: 'createdAt'): Promise<PendingRecord[]>
  get(store: 'jobInputs', id: string): Promise<JobInputsRecord | undefined>
}

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

  const db: DbSubset = {
    transaction(_names, _mode, opts) {
      if (ctx.closed()) throw closedError()
      const ops: Op[] = []
      let aborted = false
      // Runs after the caller has queued its requests: they are all made synchronously, as IDB wants.
      const done = ctx.run('jobs', async () => {
        if (aborted) throw new DOMException('the transaction was aborted', 'AbortError')
        await apply(ops, opts?.durability !== 'relaxed')
      })
      const request = () => done.then(() => undefined)
      return {
        objectStore: (name) => ({
          put(value) {
            checkId(value as { id?: unknown })
            // Encoded now: a value that cannot be stored throws here, as IDB's put does.
            ops.push({ name, id: (value as { id: string }).id, data: encodeValue(value), value })
            return request()
          },
          delete(id) {
            ops.push({ name, id, data: null })
            return request()
          },
        }),
        done,
        abort() {
          aborted = true
        },
      }
    },
    getAllFromIndex: () =>
      ctx.run('jobs', async () => {
        const out: PendingRecord[] = []
        for (const id of t.pendingIds) {
          const rec = await readRecord<PendingRecord>(t.file('pending', id))
          if (rec && Number.isFinite(rec.createdAt)) out.push(rec) // else not in the createdAt index
        }
        return out.sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      }),
    get: (_, id) => ctx.run('jobs', () => readRecord<JobInputsRecord>(t.file('inputs', id))),
  }
  return pendingAccess(db as unknown as Db)
}
