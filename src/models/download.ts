/** HTTP download of model bytes with streamed progress and a size limit checked as bytes arrive. */
import { ModelTooLargeError, UnknownModelError } from '../shared/errors.ts'

export interface DownloadOptions {
  maxBytes: number
  signal?: AbortSignal
  onProgress?(loaded: number, total: number | undefined): void
}

/** Progress is reported at most every this many bytes (and at the end). */
const PROGRESS_STEP = 256 * 1024

/** How the model hub fetches a URL's bytes (this file's `download` by default). */
export type Download = (url: string, opts: DownloadOptions) => Promise<Uint8Array>

export async function download(url: string, opts: DownloadOptions): Promise<Uint8Array> {
  const res = await fetch(url, opts.signal ? { signal: opts.signal } : {})
  if (!res.ok) throw new UnknownModelError(`${url}: HTTP ${res.status}`)
  const header = Number(res.headers.get('content-length'))
  const total = Number.isSafeInteger(header) && header > 0 ? header : undefined
  const tooLarge = (n: number) =>
    new ModelTooLargeError(`${url} is ${n}${total ? '' : '+'} bytes, over the ${opts.maxBytes}-byte limit`)
  if (total !== undefined && total > opts.maxBytes) {
    await res.body?.cancel()
    throw tooLarge(total)
  }
  if (res.body == null) return new Uint8Array(await res.arrayBuffer())
  const parts: Uint8Array[] = []
  let loaded = 0
  let reported = 0
  const reader = res.body.getReader()
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    parts.push(value)
    loaded += value.byteLength
    if (loaded > opts.maxBytes) {
      await reader.cancel()
      throw tooLarge(loaded)
    }
    if (loaded - reported >= PROGRESS_STEP) {
      reported = loaded
      opts.onProgress?.(loaded, total)
    }
  }
  opts.onProgress?.(loaded, total ?? loaded)
  if (parts.length === 1) return parts[0]!
  const out = new Uint8Array(loaded)
  let off = 0
  for (const p of parts) {
    out.set(p, off)
    off += p.byteLength
  }
  return out
}
