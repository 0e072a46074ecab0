/**
 * embed.html: the widget in an iframe, for sites that cannot load modules. Query: `mode`, `theme`,
 * `relay` (repeatable), `ice-servers` (JSON) and `origin` (repeatable: the host origins allowed to talk to it). Messages
 * from any other origin or window, and malformed ones, are ignored and logged. The peer's keys stay
 * in this frame's storage; no method returns them.
 */
import { encodeReceipt } from '../trust/receipt.ts'
import { PeerComputeElement, setWidgetBase } from './element.ts'
import {
  checkHostMessage,
  type EmbedMessage,
  type HostRequest,
  MESSAGE_TYPE,
  parseAllowList,
} from './messages.ts'

const q = new URLSearchParams(location.search)
setWidgetBase(new URL('.', location.href))
if (!customElements.get('peer-compute')) customElements.define('peer-compute', PeerComputeElement)
const el = document.createElement('peer-compute') as PeerComputeElement
for (const name of ['mode', 'theme'] as const) {
  const v = q.get(name)
  if (v) el.setAttribute(name, v)
}
if (q.getAll('relay').length) el.setAttribute('relay', q.getAll('relay').join(' '))
const ice = q.get('ice-servers') // JSON; by default the frame's own peer-compute.json gives them
if (ice) el.setAttribute('ice-servers', ice)
document.body.append(el)

const allowed = parseAllowList(q.getAll('origin'))
const embedded = window.parent !== window
let ignored = 0
function ignore(origin: string, why: string): void {
  ignored++
  document.body.dataset.ignored = String(ignored)
  console.warn(`[peer-compute embed] ignored a message from ${origin || 'unknown'}: ${why}`)
}
if (embedded && allowed.length === 0)
  console.warn('[peer-compute embed] no ?origin= given: every host message is ignored')

function post(msg: EmbedMessage, origin: string): void {
  window.parent.postMessage(msg, origin) // dropped by the browser unless the parent really is `origin`
}

const status = () => ({
  peerId: el.peerId ?? null,
  mode: el.mode,
  consented: el.consented,
  paused: el.paused,
  credit: el.credit,
  contributors: el.contributors,
  crossOriginIsolated: globalThis.crossOriginIsolated === true,
})

async function handle(req: HostRequest): Promise<unknown> {
  switch (req.method) {
    case 'status':
      return status()
    case 'pause':
      el.pause()
      return status()
    case 'resume': // resumes a pause; it cannot grant consent, only a click in this frame can
      el.resume()
      return status()
    case 'exportCredits':
      return el.exportCredits()
    case 'submit': {
      const { model, inputs, options } = req.params
      const r = await el.submit(model, inputs, options)
      const { job, worker, workers, outputs, ep, runMs, roundTripMs } = r
      return { job, worker, workers, outputs, ep, runMs, roundTripMs, receipt: encodeReceipt(r.receipt) }
    }
  }
}

window.addEventListener('message', (e: MessageEvent) => {
  if (!allowed.includes(e.origin)) return ignore(e.origin, 'origin is not in the allow-list')
  if (!embedded || e.source !== window.parent) return ignore(e.origin, 'not sent by the embedding page')
  const checked = checkHostMessage(e.data)
  if (!checked.ok) return ignore(e.origin, checked.why)
  const req = checked.value
  handle(req).then(
    (result) => post({ type: MESSAGE_TYPE, v: 1, id: req.id, ok: true, result }, e.origin),
    (err: Error) =>
      post(
        { type: MESSAGE_TYPE, v: 1, id: req.id, ok: false, error: { name: err.name, message: err.message } },
        e.origin,
      ),
  )
})

for (const event of ['ready', 'job-started', 'job-done', 'credit-changed', 'consent-changed']) {
  el.addEventListener(event, (e) => {
    const detail = (e as CustomEvent).detail
    for (const origin of allowed) post({ type: MESSAGE_TYPE, v: 1, event, detail }, origin)
  })
}
