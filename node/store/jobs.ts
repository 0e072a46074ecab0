/**
 * Job records, one file each under jobs/, with the 'history' index ([submittedAt, id, bytes]) kept
 * in memory: listJobs and pruneJobs walk it newest first, and pruning reads no outputs.
 */
import type { Store } from '../../src/store/db.ts'
import { type JobRecord, ownJobBytes } from '../../src/store/schema.ts'
import { decodeValue, encodeValue } from './codec.ts'
import type { Ctx } from './context.ts'
import { type FileOp, keyName, list, readMaybe, writeBatch } from './files.ts'

export type HistoryKey = [submittedAt: number, id: string, bytes: number]

export interface JobTables {
  /** Records that the 'history' index holds: IndexedDB leaves out one without a numeric time or size. */
  history: Map<string, HistoryKey>
  /** Ids with a pending state on disk. */
  pendingIds: Set<string>
  file(folder: 'jobs' | 'pending' | 'inputs', id: string): string
  /** The operation writing a job record, which updates the index once it is renamed into place. */
  putOp(rec: JobRecord, encoded: Uint8Array): FileOp
}

export type JobsPart = Pick<Store, 'putJob' | 'getJob' | 'listJobs' | 'pruneJobs'>

const historyKey = (rec: JobRecord): HistoryKey | undefined =>
  typeof rec?.id === 'string' && Number.isFinite(rec.submittedAt) && Number.isFinite(rec.bytes)
    ? [rec.submittedAt, rec.id, rec.bytes!]
    : undefined

/** IndexedDB's key order for history keys: numbers, then the id by UTF-16 code units, then size. */
const compare = (a: HistoryKey, b: HistoryKey) =>
  a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0) || a[2] - b[2]

/** Reads every record once at open (outputs included) to build the indexes; undecodable files are skipped. */
export async function loadJobTables(ctx: Ctx): Promise<JobTables> {
  const history = new Map<string, HistoryKey>()
  const pendingIds = new Set<string>()
  for (const name of await list(ctx.path('jobs'))) {
    const rec = await readRecord<JobRecord>(ctx.path('jobs', name))
    const key = rec && historyKey(rec)
    if (key) history.set(key[1], key)
  }
  const pendingNames = new Set<string>()
  for (const name of await list(ctx.path('pending'))) {
    const rec = await readRecord<{ id?: unknown }>(ctx.path('pending', name))
    if (typeof rec?.id !== 'string') continue
    pendingIds.add(rec.id)
    pendingNames.add(name)
  }
  // Inputs without a pending state: a crash between the two files of one commit; nothing reads them.
  const orphans = (await list(ctx.path('inputs'))).filter((n) => !pendingNames.has(n))
  await writeBatch(orphans.map((n) => ({ path: ctx.path('inputs', n), data: null })))
  const file = (folder: 'jobs' | 'pending' | 'inputs', id: string) => ctx.path(folder, `${keyName(id)}.cbor`)
  return {
    history,
    pendingIds,
    file,
    putOp: (rec, data) => ({
      path: file('jobs', rec.id),
      data,
      done() {
        const key = historyKey(rec)
        if (key) history.set(rec.id, key)
        else history.delete(rec.id)
      },
    }),
  }
}

export async function readRecord<T>(path: string): Promise<T | undefined> {
  const bytes = await readMaybe(path)
  if (!bytes) return undefined
  try {
    return decodeValue<T>(bytes)
  } catch {
    return undefined // torn by a power cut after an unsynced write: as if never written
  }
}

/** An IndexedDB key path 'id' that is not a string: the file store keys jobs by string only. */
export function checkId(rec: { id?: unknown } | null | undefined): asserts rec is { id: string } {
  if (typeof rec?.id !== 'string') throw new DOMException('a record without a string id', 'DataError')
}

export function jobsAccess(ctx: Ctx, t: JobTables): JobsPart {
  return {
    async putJob(rec) {
      checkId(rec)
      const owned = ownJobBytes(rec)
      const data = encodeValue(owned)
      await ctx.run('jobs', () => writeBatch([t.putOp(owned, data)]))
    },
    getJob: (id) => ctx.run('jobs', () => readRecord<JobRecord>(t.file('jobs', id))),
    listJobs: (limit = 200) =>
      ctx.run('jobs', async () => {
        const out: JobRecord[] = []
        for (const [, id] of [...t.history.values()].sort(compare).reverse()) {
          if (!(out.length < limit)) break
          const rec = await readRecord<JobRecord>(t.file('jobs', id))
          if (rec) out.push(rec)
        }
        return out
      }),
    pruneJobs: (keep, maxBytes = Number.POSITIVE_INFINITY) =>
      ctx.run('jobs', async () => {
        let [kept, ended, bytes] = [0, 0, 0]
        let full = false
        const doomed: FileOp[] = []
        for (const [, id, size] of [...t.history.values()].sort(compare).reverse()) {
          kept++ // a running job counts toward `keep`, as shown in the list, but not toward the budget
          if (t.pendingIds.has(id)) continue
          full ||= kept > keep || (ended > 0 && bytes + size > maxBytes)
          if (!full) {
            ended++
            bytes += size
            continue
          }
          doomed.push({ path: t.file('jobs', id), data: null, done: () => t.history.delete(id) })
        }
        await writeBatch(doomed)
        return doomed.length
      }),
  }
}
