/**
 * The Node peer's `Store`: the browser's IndexedDB store over a plain folder, one file per record.
 *
 * @example
 * const store = await createFileStore(join(homedir(), '.peer-compute'))
 * const journal = createStoreJournal({ store, log, onChange() {}, jobHistory: 200 })
 * // … on exit:
 * await store.shutdown()
 *
 * One process at a time (a lock file; StoreLockedError otherwise). Every write is atomic (temp file,
 * fsync, rename); a crash leaves at most stray temp files, removed at the next open.
 */

import { mkdir } from 'node:fs/promises'
import type { Store } from '../../src/store/db.ts'
import { createCtx } from './context.ts'
import { prepareDir } from './files.ts'
import { jobsAccess, loadJobTables } from './jobs.ts'
import { acquireLock, releaseLock } from './lock.ts'
import { modelFiles } from './models.ts'
import { pendingFiles } from './pending.ts'
import { loadCreditIndex, recordFiles } from './records.ts'

export interface FileStore extends Store {
  readonly dir: string
  /**
   * Writes the job states held back, waits for every write started, then closes. stop() alone
   * drops held-back job states, as a closed IndexedDB connection does (it still lets started ones end).
   */
  shutdown(): Promise<void>
}

const FOLDERS = [
  'jobs',
  'pending',
  'inputs',
  'models',
  'model-meta',
  'model-chunks',
  'credits',
  'settings',
  'identity',
]
const LOCK = 'LOCK'

export async function createFileStore(dir: string): Promise<FileStore> {
  const ctx = createCtx(dir)
  await mkdir(dir, { recursive: true, mode: 0o700 })
  await acquireLock(ctx.path(LOCK))
  let store: FileStore
  try {
    // Only once the folder is ours: another process's temp files are its writes in flight.
    for (const f of FOLDERS) await mkdir(ctx.path(f), { recursive: true })
    // Its own folders only: a --dir pointed at a home or project folder must not lose a user's files.
    for (const f of ['', ...FOLDERS]) await prepareDir(ctx.path(f), f === 'model-chunks' ? 1 : 0)
    const jobs = await loadJobTables(ctx)
    const credits = await loadCreditIndex(ctx)
    let released = false
    const release = () => {
      if (released) return
      released = true
      releaseLock(ctx.path(LOCK))
    }
    store = {
      dir,
      ...recordFiles(ctx, credits),
      ...modelFiles(ctx),
      ...jobsAccess(ctx, jobs),
      ...pendingFiles(ctx, jobs),
      stop() {
        if (ctx.closed()) return
        ctx.close()
        // Operations queued before the stop still run (as started transactions do): the lock goes after them.
        if (ctx.busy() === 0) release()
        else void ctx.drain().then(release)
      },
      async shutdown() {
        if (ctx.closed()) return ctx.drain()
        await store.flushJobStates()
        await ctx.drain()
        store.stop()
      },
    }
  } catch (err) {
    releaseLock(ctx.path(LOCK))
    throw err
  }
  return store
}
