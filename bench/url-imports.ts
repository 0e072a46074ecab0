/**
 * Vite's `?url` imports under tsx: the app's sources import a few files by URL (the inference worker,
 * ORT's .wasm), which tsx would load as modules. Imported first, this makes each the file's URL as a
 * string, as Vite does. Node peers never start those files: they only need the imports to resolve.
 */
import { register } from 'node:module'

const hooks = `
const MARK = '?pc-url'
export async function resolve(spec, ctx, next) {
  const q = spec.indexOf('?')
  if (q < 0 || !/(^|&)url($|&)/.test(spec.slice(q + 1))) return next(spec, ctx)
  const r = await next(spec.slice(0, q), ctx)
  return { url: r.url + MARK, shortCircuit: true }
}
export async function load(url, ctx, next) {
  if (!url.endsWith(MARK)) return next(url, ctx)
  return { format: 'module', source: 'export default ' + JSON.stringify(url.slice(0, -MARK.length)), shortCircuit: true }
}`
register(`data:text/javascript,${encodeURIComponent(hooks)}`)
