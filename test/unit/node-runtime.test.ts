/** The Node peer's runtime (node/runtime.ts): which model URLs it reads, and how far. */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { createDownload, createLocks, loadCatalogFrom } from '../../node/runtime.ts'

const dirs: string[] = []
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true })
})

describe('Node runtime', () => {
  it('reads file: models only under a local catalog folder, regular files only, within the limit', async () => {
    const root = await mkdtemp(join(tmpdir(), 'pc-rt-'))
    dirs.push(root)
    await mkdir(join(root, 'models'))
    await writeFile(join(root, 'models', 'catalog.json'), JSON.stringify([]))
    await writeFile(join(root, 'models', 'm.onnx'), Uint8Array.of(1, 2, 3))
    const { fileRoot } = await loadCatalogFrom(join(root, 'models', 'catalog.json'))
    const get = createDownload(fileRoot)
    const url = (p: string) => pathToFileURL(p).toString()
    expect(Array.from(await get(url(join(root, 'models', 'm.onnx')), { maxBytes: 3 }))).toEqual([1, 2, 3])
    await expect(get(url(join(root, 'models', 'm.onnx')), { maxBytes: 2 })).rejects.toThrow(
      /over the 2-byte limit/,
    )
    await expect(get(url('/etc/hostname'), { maxBytes: 1e6 })).rejects.toThrow(/local catalog's folder/)
    await expect(get(url(join(root, 'models')), { maxBytes: 1e6 })).rejects.toThrow(/not a file/)
    // A catalog from a site gives no file root: its entries cannot point at this disk at all.
    await expect(createDownload()(url(join(root, 'models', 'm.onnx')), { maxBytes: 1e6 })).rejects.toThrow(
      /local catalog's folder/,
    )
  })

  it('in-process locks run one holder of a name at a time, and go on after a failure', async () => {
    const locks = createLocks()
    const order: string[] = []
    const slow = locks.request('a', async () => {
      order.push('a1 in')
      await new Promise((r) => setTimeout(r, 20))
      order.push('a1 out')
      throw new Error('boom')
    })
    const next = locks.request('a', async () => {
      order.push('a2')
      return 2
    })
    const other = locks.request('b', async () => {
      order.push('b')
      return 3
    })
    await expect(slow).rejects.toThrow('boom')
    expect(await next).toBe(2)
    expect(await other).toBe(3)
    expect(order.indexOf('a2')).toBeGreaterThan(order.indexOf('a1 out'))
    expect(order.indexOf('b')).toBeLessThan(order.indexOf('a1 out'))
  })
})
