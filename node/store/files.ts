/**
 * The file store's disk primitives: safe file names for keys, atomic writes (temp file in the same
 * folder, fsync, rename), batches renamed in order, and reads that take a missing file as absent.
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { own } from '../../src/shared/bytes.ts'

/** Temp files start with this; every listing skips names starting with '.', and open() removes them. */
export const TEMP_PREFIX = '.peer-compute-tmp-'
/** Longest key kept readable (hex) in a file name; longer ones are hashed. */
const MAX_HEX_KEY_BYTES = 100

/**
 * A key as a file name that is only [0-9a-f] (or 'h-' and a hash): no '/', '..' or case
 * collision can reach outside its folder, whatever the key.
 */
export function keyName(key: string): string {
  const utf8 = Buffer.from(key, 'utf8')
  if (utf8.byteLength <= MAX_HEX_KEY_BYTES) return utf8.toString('hex')
  return `h-${createHash('sha256').update(utf8).digest('hex')}`
}

/** A model CID as a name: itself when plain lowercase base32/base36 text, else '_' and its hex. */
export const cidName = (cid: string) =>
  /^[a-z0-9]{1,200}$/.test(cid) ? cid : `_${Buffer.from(cid, 'utf8').toString('hex')}`

export function cidOfName(name: string): string | undefined {
  if (/^[a-z0-9]{1,200}$/.test(name)) return name
  if (/^_(?:[0-9a-f]{2})+$/.test(name)) return Buffer.from(name.slice(1), 'hex').toString('utf8')
  return undefined
}

const tempPath = (path: string) => join(dirname(path), TEMP_PREFIX + randomBytes(6).toString('hex'))

export interface WriteOptions {
  /** fsync the file and its folder (default true); false still renames atomically. */
  sync?: boolean
  mode?: number
}

async function writeTemp(path: string, data: Uint8Array, o: WriteOptions): Promise<string> {
  const tmp = tempPath(path)
  const fh = await open(tmp, 'w', o.mode ?? 0o644)
  try {
    await fh.writeFile(data)
    if (o.sync !== false) await fh.sync()
  } finally {
    await fh.close()
  }
  return tmp
}

/** fsync a folder so the renames in it survive a power cut (not possible everywhere: best effort). */
export async function syncDir(dir: string): Promise<void> {
  try {
    const fh = await open(dir, 'r')
    try {
      await fh.sync()
    } finally {
      await fh.close()
    }
  } catch {}
}

export async function writeAtomic(path: string, data: Uint8Array, o: WriteOptions = {}): Promise<void> {
  await writeBatch([{ path, data }], o)
}

/** A file to write (data) or remove (null, a folder too); `done` runs once it is. */
export interface FileOp {
  path: string
  data: Uint8Array | null
  done?: () => void
}

/**
 * Writes every file to a temp file first, then renames and removes in the given order: a crash
 * leaves a prefix of the batch done (and stray temp files), never a torn file.
 */
export async function writeBatch(ops: FileOp[], o: WriteOptions = {}): Promise<void> {
  const temps = await Promise.allSettled(ops.map((op) => (op.data ? writeTemp(op.path, op.data, o) : null)))
  const failed = temps.find((t) => t.status === 'rejected')
  if (failed) {
    await Promise.all(
      temps.map((t) => (t.status === 'fulfilled' && t.value ? rm(t.value, { force: true }) : 0)),
    )
    throw failed.reason
  }
  const dirs = new Set<string>()
  const tmps = temps.map((t) => (t as PromiseFulfilledResult<string | null>).value)
  for (const [i, op] of ops.entries()) {
    const tmp = tmps[i]
    try {
      if (tmp) await rename(tmp, op.path)
      else await rm(op.path, { force: true, recursive: true })
    } catch (err) {
      await Promise.all(tmps.slice(i).map((t) => t && rm(t, { force: true })))
      throw err
    }
    op.done?.()
    dirs.add(dirname(op.path))
  }
  if (o.sync !== false) await Promise.all([...dirs].map(syncDir))
}

/**
 * The file's bytes as a plain Uint8Array with a buffer of its own, or undefined if there is none.
 * A small file's Buffer may sit in Node's shared pool, which a transfer() to a worker would detach.
 */
export async function readMaybe(path: string): Promise<Uint8Array | undefined> {
  try {
    const buf = await readFile(path)
    return own(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

/** Names in a folder, temp and hidden files left out; none if the folder is missing. */
export async function list(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).filter((n) => !n.startsWith('.'))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
}

/** Creates `dir` and removes the temp files a killed process left in it and in its subfolders. */
export async function prepareDir(dir: string, depth = 2): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.name.startsWith(TEMP_PREFIX)) await rm(join(dir, e.name), { force: true, recursive: true })
    else if (e.isDirectory() && depth > 0) await prepareDir(join(dir, e.name), depth - 1)
  }
}
