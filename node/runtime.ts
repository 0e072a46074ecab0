/**
 * What a Node peer has in place of a tab's platform (src/peer.ts PeerRuntime): a data directory for
 * state, a key file, the catalog from a file or URL, in-process locks, and `file:` model URLs.
 */
import { createReadStream } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { isAbsolute, relative, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import type { PrivateKey } from '@libp2p/interface'
import { type Catalog, type CatalogEntry, createCatalog } from '../src/models/catalog.ts'
import { type Download, download } from '../src/models/download.ts'
import { concat, own } from '../src/shared/bytes.ts'
import { ModelTooLargeError, UnknownModelError } from '../src/shared/errors.ts'
import type { Locks } from '../src/trust/credits.ts'
import { loadOrCreateKey } from './relay/key.ts'

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

/**
 * Model bytes from HTTP, or from `file:` URLs under `fileRoot` only (a local catalog's folder): a
 * catalog fetched over HTTP cannot point a peer at its disk. Regular files only, read no further
 * than the size limit (a device or a growing file does not fill memory).
 */
export function createDownload(fileRoot?: string): Download {
  return async (url, opts) => {
    if (!url.startsWith('file:')) return download(url, opts)
    const path = fileURLToPath(url)
    const rel = fileRoot === undefined ? '..' : relative(fileRoot, path)
    if (rel.startsWith('..') || isAbsolute(rel))
      throw new UnknownModelError(`${url}: file URLs are read only from a local catalog's folder`)
    const st = await stat(path).catch(() => undefined)
    if (!st?.isFile()) throw new UnknownModelError(`${path} is not a file`)
    const tooLarge = (n: number) =>
      new ModelTooLargeError(`${path} is ${n}+ bytes, over the ${opts.maxBytes}-byte limit`)
    if (st.size > opts.maxBytes) throw tooLarge(st.size)
    const parts: Uint8Array[] = []
    let loaded = 0
    for await (const chunk of createReadStream(path, { end: opts.maxBytes, signal: opts.signal })) {
      parts.push(chunk as Buffer)
      loaded += (chunk as Buffer).byteLength
      if (loaded > opts.maxBytes) throw tooLarge(loaded)
    }
    opts.onProgress?.(loaded, loaded)
    return own(concat(parts))
  }
}

/** The catalog (a catalog.json file or URL), and the folder its `file:` models may come from. */
export async function loadCatalogFrom(where: string): Promise<{ catalog: Catalog; fileRoot?: string }> {
  if (/^https?:\/\//.test(where)) {
    const res = await fetch(where)
    if (!res.ok) throw new UnknownModelError(`catalog ${where}: HTTP ${res.status}`)
    return { catalog: createCatalog((await res.json()) as CatalogEntry[], new URL('..', where).toString()) }
  }
  const path = isAbsolute(where) ? where : resolve(where)
  const entries = JSON.parse(await readFile(path, 'utf8')) as CatalogEntry[]
  // Model paths in it are relative to its folder's parent (models/…), as on the site.
  const base = new URL('..', pathToFileURL(path))
  return { catalog: createCatalog(entries, base.toString()), fileRoot: fileURLToPath(base) }
}

export const loadKey = (file: string): Promise<PrivateKey> => loadOrCreateKey(file)
