/**
 * Starts the inference worker from this module's own URL. Embedded in another site, that URL is
 * cross-origin, which `new Worker` refuses: a same-origin blob module then imports it (the asset
 * must be served with CORS), and ORT finds its .wasm next to the real worker URL, not the page's.
 */
import workerUrl from '../../workers/inference.worker.ts?worker&url'

export function spawnInferenceWorker(): Worker {
  const url = new URL(workerUrl, import.meta.url)
  if (url.origin === location.origin) return new Worker(url, { type: 'module', name: 'inference' })
  const shim = new Blob([`import ${JSON.stringify(url.href)}\n`], { type: 'text/javascript' })
  const blobUrl = URL.createObjectURL(shim)
  const worker = new Worker(blobUrl, { type: 'module', name: 'inference' })
  setTimeout(() => URL.revokeObjectURL(blobUrl), 60_000) // fetched long before then
  return worker
}
