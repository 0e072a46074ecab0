/**
 * Submit view: a model picker with descriptions and sizes, inputs pasted, from a file (.npy or JSON)
 * or random, the verification policy in words beside its fields, and copyable, downloadable results.
 */
import type { CatalogEntry } from '../models/catalog.ts'
import type { Peer } from '../peer.ts'
import { InvalidTensorError } from '../shared/errors.ts'
import type { NamedTensors } from '../shared/tensor.ts'
import { readNpy, writeNpy } from '../tasks/npy.ts'
import { matchDims, parseJsonInputs, randomInputsJson, tensorsToJson } from '../tasks/raw.ts'
import { type CompareRule, policyFor, type VerificationPolicy } from '../trust/policy.ts'
import { riskWords } from '../trust/risk.ts'
import { policyWords } from './policy-words.ts'
import { formatBytes, short } from './render.ts'
import { copyButton, download, errorText } from './tasks-parts.ts'

const RULES: Record<string, CompareRule> = {
  exact: { kind: 'exact' },
  tolerance: { kind: 'tolerance', atol: 1e-4, rtol: 1e-4 },
  argmax: { kind: 'argmax' },
  topk: { kind: 'topk', k: 5 },
}

const FORM = `<h2>Submit a job</h2>
  <form id="submit">
    <label class="wide" for="model">Model</label> <select id="model" class="wide"></select>
    <p class="wide hint" id="model-about" aria-live="polite"></p>
    <fieldset class="wide">
      <legend>Inputs</legend>
      <label class="wide">Paste JSON: an array of numbers, or an object of named arrays
        <textarea id="input" rows="3"></textarea></label>
      <label>Or read a file (.npy for the first input, or .json)
        <input id="input-file" type="file" accept=".npy,.json,application/json" /></label>
      <button type="button" id="random">Random input</button>
    </fieldset>
    <fieldset id="policy" class="wide">
      <legend>Verification</legend>
      <label>Replicas <input id="redundancy" type="number" min="1" max="5" value="2" /></label>
      <label>Must agree <input id="quorum" type="number" min="1" max="5" value="2" /></label>
      <label for="rule">Agreement</label> <select id="rule">
        <option value="">task default</option><option value="exact">exact (same output CID)</option>
        <option value="tolerance">tolerance 1e-4</option><option value="argmax">argmax</option>
        <option value="topk">top-5</option></select>
      <label><input id="adaptive" type="checkbox" checked /> adaptive replication</label>
      <p class="wide hint" id="policy-words" aria-live="polite"></p>
    </fieldset>
    <label for="target">Send to</label> <select id="target"><option value="">any contributor (verified)</option></select>
    <label>Count <input id="count" type="number" min="1" max="1000" value="1" /></label>
    <button type="submit" id="go">Submit</button>
    <output id="submit-error" class="wide" role="status"></output>
  </form>
  <h3>Results</h3>
  <p class="hint">Images and audio go through <a href="#tasks">Tasks</a>; every job is listed under <a href="#jobs">Jobs</a>.</p>
  <ul id="submit-results" class="results"></ul>`

const MAX_RESULTS = 20

type Query = <T extends HTMLElement>(id: string) => T

export function mountSubmitView(peer: Peer, el: HTMLElement): { refreshTargets(): void } {
  el.innerHTML = FORM
  const q: Query = <T extends HTMLElement>(id: string) => el.querySelector<T>(`#${id}`)!
  const model = q<HTMLSelectElement>('model')
  const input = q<HTMLTextAreaElement>('input')
  const err = q<HTMLOutputElement>('submit-error')
  for (const e of peer.catalog.entries) model.add(new Option(`${e.name} · ${formatBytes(e.size)}`, e.cid))
  const entry = () => peer.catalog.byCid(model.value)
  const specs = () => entry()?.inputs ?? []

  const explain = () => explainPolicy(q, entry())
  const fillRandom = () => {
    input.value = randomInputsJson(specs()) // also right for multi-input, int64 and dynamic-shape models
  }
  model.addEventListener('change', () => {
    about(q, entry())
    fillRandom()
    explain()
  })
  q('policy').addEventListener('input', explain)
  q('target').addEventListener('change', explain)
  q('random').addEventListener('click', fillRandom)
  q<HTMLInputElement>('input-file').addEventListener('change', async (ev) => {
    const f = (ev.target as HTMLInputElement).files?.[0]
    if (!f) return
    err.textContent = ''
    try {
      input.value = await fileToJson(f, specs())
    } catch (e) {
      err.textContent = errorText(e)
    }
  })
  about(q, entry())
  fillRandom()
  explain()

  q<HTMLFormElement>('submit').addEventListener('submit', async (ev) => {
    ev.preventDefault()
    err.textContent = ''
    const e = entry()
    if (!e) return
    try {
      await submitJobs(peer, q, e, parseJsonInputs(input.value, specs()))
    } catch (e) {
      err.textContent = errorText(e)
    }
  })

  return {
    refreshTargets() {
      const target = q<HTMLSelectElement>('target')
      const keep = target.value
      target.replaceChildren(
        new Option('any contributor (verified)', ''),
        ...peer.peers().map((p) => new Option(`only ${short(p.id)}`, p.id)),
      )
      // The chosen peer left: back to any contributor, and say so.
      target.value = [...target.options].some((o) => o.value === keep) ? keep : ''
      explain()
    },
  }
}

/** The policy the form's fields ask for. */
function readPolicy(q: Query): Partial<VerificationPolicy> {
  const rule = RULES[q<HTMLSelectElement>('rule').value]
  return {
    redundancy: Number(q<HTMLInputElement>('redundancy').value),
    quorum: Number(q<HTMLInputElement>('quorum').value),
    adaptive: q<HTMLInputElement>('adaptive').checked,
    ...(rule ? { compare: rule } : {}),
  }
}

/** The policy in words beside its fields, or why it is not valid. */
function explainPolicy(q: Query, entry: CatalogEntry | undefined): void {
  const words = q('policy-words')
  if (q<HTMLSelectElement>('target').value) {
    words.textContent = 'Sent to one chosen peer: its answer is signed but not cross-checked by anyone.'
    return
  }
  try {
    words.textContent = policyWords(policyFor(entry?.task, readPolicy(q)))
    words.classList.remove('bad')
  } catch (e) {
    words.textContent = `⚠ ${(e as Error).message}`
    words.classList.add('bad')
  }
}

function about(q: Query, e?: CatalogEntry): void {
  q('model-about').textContent = e
    ? `${e.description}. ${formatBytes(e.size)}, task ${e.task}, ${e.license}. In: ${specText(e.inputs)}. Out: ${specText(e.outputs)}.`
    : ''
}

/** Runs the form's count of jobs, lists the newest results and says how many failed. */
async function submitJobs(peer: Peer, q: Query, e: CatalogEntry, inputs: NamedTensors): Promise<void> {
  const err = q<HTMLOutputElement>('submit-error')
  const results = q<HTMLUListElement>('submit-results')
  const n = Math.max(1, Math.min(1000, Number(q<HTMLInputElement>('count').value) || 1))
  const target = q<HTMLSelectElement>('target').value
  err.textContent = `running ${n} job(s)…`
  const opts = target ? { peer: target } : { policy: readPolicy(q) }
  const rs = await Promise.allSettled(Array.from({ length: n }, () => peer.submit(e.cid, inputs, opts)))
  // Only the newest are kept: build those (their JSON is made on demand).
  const done = rs.filter((r) => r.status === 'fulfilled').slice(-MAX_RESULTS)
  for (const r of done) results.prepend(resultItem(e, r.value))
  while (results.children.length > MAX_RESULTS) results.lastElementChild!.remove()
  const failed = rs.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
  err.textContent = failed.length
    ? `${failed.length} of ${n} failed: ${errorText(failed[0]!.reason)}`
    : `${n} verified`
}

const specText = (specs: CatalogEntry['inputs']) =>
  specs.map((s) => `${s.name} ${s.dtype}[${s.dims.map((d) => (d < 0 ? '?' : d)).join('×')}]`).join(', ')

/** A .json file is taken as is; a .npy file becomes the first input, as JSON the form can show. */
async function fileToJson(f: File, specs: CatalogEntry['inputs']): Promise<string> {
  const bytes = new Uint8Array(await f.arrayBuffer())
  if (!f.name.toLowerCase().endsWith('.npy')) return new TextDecoder().decode(bytes)
  const spec = specs[0]
  if (!spec) throw new InvalidTensorError('this model takes no inputs')
  const t = readNpy(bytes)
  if (t.dtype !== spec.dtype)
    throw new InvalidTensorError(`${f.name}: dtype ${t.dtype}, ${spec.name} needs ${spec.dtype}`)
  matchDims(spec, t.dims)
  return tensorsToJson({ [spec.name]: t })
}

/** One verified result: who computed it, and its outputs as .npy downloads or copyable JSON. */
function resultItem(e: CatalogEntry, r: Awaited<ReturnType<Peer['submit']>>): HTMLLIElement {
  const li = document.createElement('li')
  li.dataset.job = r.id
  const head = document.createElement('p')
  head.textContent = `${e.name}: verified by ${r.workers.length} (${r.workers.map(short).join(', ')}) · ${r.ep} · ${r.runMs.toFixed(1)} ms run, ${r.roundTripMs.toFixed(0)} ms round trip · risk ${riskWords(r.risk)}`
  li.append(head)
  const out: NamedTensors = r.outputs
  const row = document.createElement('p')
  for (const [k, t] of Object.entries(out)) {
    const b = button(`Download ${k}.npy`, () => download(`${e.name}-${k}.npy`, writeNpy(t)))
    b.title = `${k}: ${t.dtype} [${t.dims.join(', ')}]`
    row.append(b, ' ')
  }
  // Large outputs (OCR maps) make megabytes of JSON: only when asked for.
  row.append(copyButton('Copy outputs as JSON', () => tensorsToJson(out)))
  const pre = document.createElement('pre')
  const details = document.createElement('details')
  details.addEventListener('toggle', () => {
    if (!details.open || pre.textContent) return
    const json = tensorsToJson(out)
    pre.textContent = json.length > 2000 ? `${json.slice(0, 2000)}…` : json
  })
  details.append(Object.assign(document.createElement('summary'), { textContent: 'Outputs' }), pre)
  li.append(row, details)
  return li
}

function button(text: string, onClick: (b: HTMLButtonElement) => void): HTMLButtonElement {
  const b = Object.assign(document.createElement('button'), { type: 'button', textContent: text })
  b.addEventListener('click', () => onClick(b))
  return b
}
