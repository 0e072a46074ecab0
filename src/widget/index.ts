/**
 * The widget entry, built as one ES module (`dist/widget.js`) that defines `<peer-compute>`.
 *
 * @example
 * ```html
 * <script type="module" src="https://peer-compute.example/widget.js"></script>
 * <peer-compute mode="contribute" theme="auto"></peer-compute>
 * ```
 */
import { PeerComputeElement, setWidgetBase } from './element.ts'

// The catalog, models and relay config live next to widget.js, wherever the host page is.
// (not `new URL('.', import.meta.url)`: Vite would take that literal for an asset to bundle)
const moduleUrl = new URL(import.meta.url)
setWidgetBase(import.meta.env.DEV ? new URL('/', location.href) : new URL('.', moduleUrl))
if (!customElements.get('peer-compute')) customElements.define('peer-compute', PeerComputeElement)

export type { JobOutcome, SubmitOptions } from '../jobs/requester.ts'
export type { NamedTensors, Tensor } from '../shared/tensor.ts'
export { PeerComputeElement }
