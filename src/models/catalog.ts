/** The model catalog: content-addressed entries with their input and output specs. */
import type { DType } from '../shared/tensor.ts'

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
