/**
 * Vendor models (scripts/copy-models.ts): copied bytes match their catalog CIDs, specs match the ONNX
 * files, generated entries are kept, and a rebuild changes nothing.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import * as ort from 'onnxruntime-node'
import { beforeAll, describe, expect, it } from 'vitest'
import { copyModels, VENDOR_MODELS, VENDOR_PREFIX } from '../../scripts/copy-models.ts'
import type { CatalogEntry } from '../../src/models/catalog.ts'
import { modelCid } from '../../src/shared/cid.ts'

const PUBLIC = resolve(import.meta.dirname, '../../public')
const readCatalog = () => readFileSync(resolve(PUBLIC, 'models/catalog.json'), 'utf8')

describe('vendor models in the catalog', () => {
  let text: string
  let catalog: CatalogEntry[]

  beforeAll(async () => {
    await copyModels(() => {})
    text = readCatalog()
    catalog = JSON.parse(text)
  })

  it('is deterministic: copying again rewrites nothing', async () => {
    const lines: string[] = []
    await copyModels((l) => lines.push(l))
    expect(readCatalog()).toBe(text)
    expect(lines.every((l) => l.endsWith('(unchanged)'))).toBe(true)
  })

  it('keeps the generated models first, then one entry per vendor model', () => {
    const vendor = catalog.filter((e) => e.file.startsWith(VENDOR_PREFIX))
    expect(vendor.map((e) => e.name)).toEqual(VENDOR_MODELS.map((m) => m.name))
    expect(catalog.slice(0, catalog.length - vendor.length).every((e) => e.mlp)).toBe(true)
    for (const e of vendor) {
      expect(e.license).toMatch(/MIT/)
      expect(e.source).toMatch(/^npm:@/)
    }
  })

  it.each(VENDOR_MODELS.map((m) => m.name))('%s: CID, size and tensor specs match the file', async (name) => {
    const entry = catalog.find((e) => e.name === name)!
    const bytes = new Uint8Array(readFileSync(resolve(PUBLIC, entry.file)))
    expect(bytes.length).toBe(entry.size)
    expect((await modelCid(bytes)).toString()).toBe(entry.cid)
    const session = await ort.InferenceSession.create(bytes)
    try {
      const spec = (m: readonly ort.InferenceSession.ValueMetadata[]) =>
        m.map((v) => ({
          name: v.name,
          dtype: v.isTensor ? v.type : 'non-tensor',
          dims: v.isTensor ? v.shape.map((d) => (typeof d === 'number' ? d : -1)) : [],
        }))
      expect(entry.inputs).toEqual(spec(session.inputMetadata))
      expect(entry.outputs).toEqual(spec(session.outputMetadata))
    } finally {
      await session.release()
    }
    for (const a of entry.assets ?? []) {
      const asset = new Uint8Array(readFileSync(resolve(PUBLIC, a.file)))
      expect((await modelCid(asset)).toString()).toBe(a.cid)
      expect(asset.length).toBe(a.size)
    }
  })

  it('the recognizer has one class per dictionary line, plus blank and space', () => {
    const rec = catalog.find((e) => e.name === 'ppocr-v4-rec')!
    const dict = readFileSync(resolve(PUBLIC, rec.assets![0]!.file), 'utf8').split('\n').filter(Boolean)
    expect(rec.outputs[0]!.dims.at(-1)).toBe(dict.length + 2)
  })
})
