/** Raw tensor view: inputs as JSON or .npy files, outputs downloadable as .npy or JSON. */
import type { Peer } from '../peer.ts'
import { InvalidTensorError } from '../shared/errors.ts'
import type { NamedTensors } from '../shared/tensor.ts'
import { readNpy, writeNpy } from '../tasks/npy.ts'
import { matchDims, parseJsonInputs, randomInputsJson, tensorsToJson } from '../tasks/raw.ts'
import { short } from './render.ts'
import { download, errorText } from './tasks-parts.ts'

export function mountRawView(peer: Peer, el: HTMLElement): void {
  el.innerHTML = `<form data-role="form">
      <label>Model <select data-role="model"></select></label>
      <button type="button" data-role="random">Random JSON</button>
      <div class="wide" data-role="files"></div>
      <label class="wide">Inputs as JSON (inputs given as .npy above take precedence)
        <textarea rows="3" data-role="json"></textarea></label>
      <button type="submit">Run</button>
    </form>
    <output data-role="status"></output>
    <div data-role="outputs"></div>`
  const $ = <T extends HTMLElement>(role: string) => el.querySelector<T>(`[data-role="${role}"]`)!
  const model = $<HTMLSelectElement>('model')
  const json = $<HTMLTextAreaElement>('json')
  const status = $<HTMLOutputElement>('status')
  const outputs = $('outputs')
  const files = new Map<string, File>()
  for (const e of peer.catalog.entries) model.add(new Option(`${e.name} (${e.task})`, e.cid))
  const entry = () => peer.catalog.byCid(model.value)

  const showSpecs = () => {
    files.clear()
    const box = $('files')
    box.replaceChildren()
    for (const spec of entry()?.inputs ?? []) {
      const label = document.createElement('label')
      label.textContent = `${spec.name}: ${spec.dtype} [${spec.dims.map((d) => (d < 0 ? '?' : d)).join(', ')}] .npy `
      const input = Object.assign(document.createElement('input'), { type: 'file', accept: '.npy' })
      input.addEventListener('change', () => {
        const f = input.files?.[0]
        if (f) files.set(spec.name, f)
        else files.delete(spec.name)
      })
      label.append(input)
      box.append(label)
    }
    json.value = ''
  }
  model.addEventListener('change', showSpecs)
  $('random').addEventListener('click', () => {
    json.value = randomInputsJson(entry()?.inputs ?? [])
  })
  showSpecs()

  const inputs = async (): Promise<NamedTensors> => {
    const specs = entry()?.inputs ?? []
    const fromJson = specs.filter((s) => !files.has(s.name))
    const named = fromJson.length ? parseJsonInputs(json.value, fromJson) : {}
    for (const spec of specs) {
      const f = files.get(spec.name)
      if (!f) continue
      const t = readNpy(new Uint8Array(await f.arrayBuffer()))
      if (t.dtype !== spec.dtype)
        throw new InvalidTensorError(`${f.name}: dtype ${t.dtype}, ${spec.name} needs ${spec.dtype}`)
      matchDims(spec, t.dims)
      named[spec.name] = t
    }
    return named
  }

  const showOutputs = (out: NamedTensors, name: string) => {
    outputs.replaceChildren()
    for (const [k, t] of Object.entries(out)) {
      const p = document.createElement('p')
      const b = Object.assign(document.createElement('button'), { type: 'button', textContent: `${k}.npy` })
      b.addEventListener('click', () => download(`${name}-${k}.npy`, writeNpy(t)))
      p.append(`${k}: ${t.dtype} [${t.dims.join(', ')}] `, b)
      outputs.append(p)
    }
    const all = Object.assign(document.createElement('button'), {
      type: 'button',
      textContent: 'all outputs as JSON',
    })
    all.addEventListener('click', () =>
      download(`${name}-outputs.json`, tensorsToJson(out), 'application/json'),
    )
    outputs.append(all)
  }

  $<HTMLFormElement>('form').addEventListener('submit', async (ev) => {
    ev.preventDefault()
    const e = entry()
    if (!e) return
    status.className = ''
    status.textContent = 'running…'
    try {
      const r = await peer.submit(e.cid, await inputs())
      showOutputs(r.outputs, e.name)
      status.className = 'ok'
      status.textContent = `computed by ${short(r.worker)} on ${r.ep} in ${r.runMs.toFixed(1)} ms`
    } catch (err) {
      status.className = 'bad'
      status.textContent = errorText(err)
    }
  })
}
