/** The model catalog: content-addressed entries with their input and output specs. */
import { InvalidTensorError } from '../shared/errors.ts'
import { type DType, elementCount, type NamedTensors } from '../shared/tensor.ts'

export interface TensorSpec {
  name: string
  dtype: DType
  /** -1 marks a dynamic dimension. */
  dims: number[]
}

/** A content-addressed file a task needs besides the model, e.g. the OCR dictionary. */
export interface CatalogAsset {
  name: string
  cid: string
  size: number
  file: string
}

export interface CatalogEntry {
  name: string
  cid: string
  size: number
  /** URL relative to the catalog, or absolute. */
  file: string
  /** Mirrors serving the same bytes (absolute URLs), tried after `file`; peers are tried last. */
  urls?: string[]
  inputs: TensorSpec[]
  outputs: TensorSpec[]
  task: string
  license: string
  description: string
  mlp?: { seed: number; layers: number[]; batch: number }
  /** Provenance, e.g. `npm:<package>@<version>/<path>`. */
  source?: string
  assets?: CatalogAsset[]
}

export interface Catalog {
  entries: CatalogEntry[]
  byCid(cid: string): CatalogEntry | undefined
  byName(name: string): CatalogEntry | undefined
  /** Absolute URL of an entry's bytes. */
  url(entry: CatalogEntry): string
}

export function createCatalog(entries: CatalogEntry[], baseUrl: string): Catalog {
  return {
    entries,
    byCid: (cid) => entries.find((e) => e.cid === cid),
    byName: (name) => entries.find((e) => e.name === name),
    url: (e) => new URL(e.file, baseUrl).toString(),
  }
}

export async function loadCatalog(url: string): Promise<Catalog> {
  const res = await fetch(url)
  if (!res.ok) throw new Error(`catalog ${url}: HTTP ${res.status}`)
  const entries = (await res.json()) as CatalogEntry[]
  // models/… paths are relative to the site root that holds catalog.json's folder.
  return createCatalog(entries, new URL('..', new URL(url, location.href)).toString())
}

/**
 * The requester's own check before anything is sent: names, dtypes and fixed dims as the entry
 * declares them. Without it a bad input goes to every contributor, each refusing it in turn.
 */
export function checkInputs(entry: CatalogEntry, inputs: NamedTensors): void {
  const bad = (why: string): never => {
    throw new InvalidTensorError(`${entry.name}: ${why}`)
  }
  for (const name of Object.keys(inputs)) {
    if (!entry.inputs.some((s) => s.name === name)) bad(`the model has no input "${name.slice(0, 64)}"`)
  }
  for (const spec of entry.inputs) {
    const t = inputs[spec.name] ?? bad(`input "${spec.name}" is missing`)
    if (t.dtype !== spec.dtype) bad(`input "${spec.name}" is ${t.dtype}, the model expects ${spec.dtype}`)
    if (t.dims.length !== spec.dims.length || spec.dims.some((d, i) => d >= 0 && d !== t.dims[i])) {
      bad(`input "${spec.name}" has dims [${t.dims}], the model expects [${spec.dims}] (-1 = any)`)
    }
    if (t.data.length !== elementCount(t.dims)) {
      bad(`input "${spec.name}" has ${t.data.length} values, dims [${t.dims}] need ${elementCount(t.dims)}`)
    }
  }
}
