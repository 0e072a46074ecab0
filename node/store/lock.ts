/**
 * One process per store folder: a lock file holding the owner's pid, taken over when that process
 * is gone. A pid reused by an unrelated process keeps the folder locked until the file is deleted.
 */

import { randomBytes } from 'node:crypto'
import { readFileSync, unlinkSync } from 'node:fs'
import { link, open, readFile, rename, rm, stat } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { StoreLockedError } from '../../src/shared/errors.ts'
import { TEMP_PREFIX } from './files.ts'

/** An unreadable lock (its owner died between creating and writing it) is stale after this long. */
const UNREADABLE_STALE_MS = 10_000

const ownerOf = (text: string) => {
  const pid = Number(text.trim())
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH' // EPERM: alive, another user's
  }
}

async function create(path: string): Promise<boolean> {
  let fh: Awaited<ReturnType<typeof open>>
  try {
    fh = await open(path, 'wx', 0o600)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw err
  }
  try {
    await fh.writeFile(`${process.pid}\n`)
    await fh.sync()
  } finally {
    await fh.close()
  }
  return true
}

/** The lock's live holder ('unknown' while its pid is being written), 'stale', or undefined if no lock. */
async function holder(path: string): Promise<number | 'unknown' | 'stale' | undefined> {
  try {
    const pid = ownerOf(await readFile(path, 'utf8'))
    // Our own pid in a lock we do not hold is a previous life's (a container's PID 1 restarting).
    if (pid === process.pid && !heldHere.has(resolve(path))) return 'stale'
    if (pid !== undefined) return alive(pid) ? pid : 'stale'
    return Date.now() - (await stat(path)).mtimeMs > UNREADABLE_STALE_MS ? 'stale' : 'unknown'
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

/** Locks this process holds: a second open of one folder in one process is refused too. */
const heldHere = new Set<string>()

export async function acquireLock(path: string): Promise<void> {
  if (heldHere.has(resolve(path)))
    throw new StoreLockedError(`${dirname(path)} is already open in this process`)
  for (let attempt = 0; attempt < 5; attempt++) {
    if (await create(path)) {
      heldHere.add(resolve(path))
      return
    }
    const held = await holder(path)
    if (typeof held === 'number' || held === 'unknown')
      throw new StoreLockedError(
        `${dirname(path)} is in use by process ${held} (delete ${path} if no such peer is running)`,
      )
    if (held === undefined) continue // released meanwhile
    // Stale: move it aside, then make sure what moved was still stale (another process may have
    // taken it over meanwhile; then theirs goes back).
    const aside = join(dirname(path), TEMP_PREFIX + randomBytes(6).toString('hex'))
    try {
      await rename(path, aside)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue
      throw err
    }
    if ((await holder(aside)) !== 'stale') {
      await link(aside, path).catch(() => {})
      await rm(aside, { force: true })
      throw new StoreLockedError(`${dirname(path)} was just taken by another process`)
    }
    await rm(aside, { force: true })
  }
  throw new StoreLockedError(`could not lock ${dirname(path)}`)
}

/** Removes the lock if this process holds it (synchronous: the store's stop() is). */
export function releaseLock(path: string): void {
  heldHere.delete(resolve(path))
  try {
    if (ownerOf(readFileSync(path, 'utf8')) === process.pid) unlinkSync(path)
  } catch {}
}
