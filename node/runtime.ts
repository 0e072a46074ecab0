/**
 * What a Node peer has in place of a tab's platform (src/peer.ts PeerRuntime): a data directory for
 * state, a key file, the catalog from a file or URL, in-process locks, and `file:` model URLs.
 */
import { readFile, stat } from 'node:fs/promises'
import { isAbsolute, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import type { PrivateKey } from '@libp2p/interface'
import { type Catalog, type CatalogEntry, createCatalog } from '../src/models/catalog.ts'
import { type Download, download } from '../src/models/download.ts'
import { loadOrCreateKey } from '../src/relay/key.ts'
import { ModelTooLargeError, UnknownModelError } from '../src/shared/errors.ts'
import type { Locks } from '../src/trust/credits.ts'

/** One process owns its data directory (the store's lock file), so locks need only be in-process. */
export function createLocks(): Locks {
  const tails = new Map<string, Promise<unknown>>()
  return {
    request(name, fn) {
      const run = (tails.get(name) ?? Promise.resolve()).then(fn, fn)
      const tail = run.catch(() => {})
      tails.set(name, tail)
      void tail.then(() => {
        if (tails.get(name) === tail) tails.delete(name)
      })
      return run
    },
  }
}

/** Model bytes from `file:` URLs (the packaged catalog) or HTTP, with the same size limit. */
export const downloadAny: Download = async (url, opts) => {
  if (!url.startsWith('file:')) return download(url, opts)
  const path = fileURLToPath(url)
  const size = await stat(path).then(
    (s) => s.size,
    () => {
      throw new UnknownModelError(`${path} does not exist`)
    },
  )
  if (size > opts.maxBytes) {
    throw new ModelTooLargeError(`${path} is ${size} bytes, over the ${opts.maxBytes}-byte limit`)
  }
  const bytes = new Uint8Array(await readFile(path))
  opts.onProgress?.(bytes.byteLength, bytes.byteLength)
  return bytes
}

/** The catalog (a catalog.json file or URL); model paths in it are relative to its folder's parent. */
export async function loadCatalogFrom(where: string): Promise<Catalog> {
  if (/^https?:\/\//.test(where)) {
    const res = await fetch(where)
    if (!res.ok) throw new UnknownModelError(`catalog ${where}: HTTP ${res.status}`)
    return createCatalog((await res.json()) as CatalogEntry[], new URL('..', where).toString())
  }
  const path = isAbsolute(where) ? where : resolve(where)
  const entries = JSON.parse(await readFile(path, 'utf8')) as CatalogEntry[]
  return createCatalog(entries, new URL('..', pathToFileURL(path)).toString())
}

export const loadKey = (file: string): Promise<PrivateKey> => loadOrCreateKey(file)
