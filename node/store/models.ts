/**
 * Cached models: bytes as models/<cid>.onnx (a content-addressed folder), their listing record in
 * model-meta/<cid>.cbor (listing or touching reads no megabytes), partial transfers as
 * model-chunks/<cid>/<index>.chunk. A model file with no listing record (a crash between the two,
 * or a file copied in) is listed with its CID for a name and its mtime.
 */
import { mkdir, stat } from 'node:fs/promises'
import type { Store } from '../../src/store/db.ts'
import type { ModelMeta } from '../../src/store/models.ts'
import type { ModelChunkRecord, ModelRecord } from '../../src/store/schema.ts'
import { encodeValue } from './codec.ts'
import type { Ctx } from './context.ts'
import { cidName, cidOfName, list, readMaybe, writeAtomic, writeBatch } from './files.ts'
import { readRecord } from './jobs.ts'

export type ModelsPart = Pick<
  Store,
  | 'getModel'
  | 'putModel'
  | 'listModelCids'
  | 'deleteModel'
  | 'listModelMeta'
  | 'putModelAndMeta'
  | 'touchModelMeta'
  | 'removeModel'
  | 'getModelChunks'
  | 'putModelChunks'
  | 'clearModelChunks'
>

const metaOf = ({ cid, name, size, addedAt, lastUsed }: ModelMeta): ModelMeta => ({
  cid,
  name,
  size,
  addedAt,
  lastUsed,
})
const isMeta = (x: unknown): x is ModelMeta =>
  typeof (x as ModelMeta)?.cid === 'string' && Number.isSafeInteger((x as ModelMeta).size)

function checkCid(cid: unknown): asserts cid is string {
  if (typeof cid !== 'string' || cid === '') throw new DOMException('a model without a CID', 'DataError')
}

export function modelFiles(ctx: Ctx): ModelsPart {
  const bytesPath = (cid: string) => ctx.path('models', `${cidName(cid)}.onnx`)
  const metaPath = (cid: string) => ctx.path('model-meta', `${cidName(cid)}.cbor`)
  const chunkDir = (cid: string) => ctx.path('model-chunks', cidName(cid))
  const chunkPath = (cid: string, index: number) => ctx.path('model-chunks', cidName(cid), `${index}.chunk`)
  const run = <T>(fn: () => Promise<T>) => ctx.run('models', fn)

  /** CIDs named by files with `ext` in `folder`, in key order. */
  const cidsIn = async (folder: string, ext: string) =>
    (await list(ctx.path(folder)))
      .filter((n) => n.endsWith(ext))
      .map((n) => cidOfName(n.slice(0, -ext.length)))
      .filter((c): c is string => c !== undefined)
      .sort()

  /** The stored listing record, or undefined when missing or not one. */
  async function storedMeta(cid: string): Promise<ModelMeta | undefined> {
    const meta = await readRecord<unknown>(metaPath(cid))
    return isMeta(meta) && meta.cid === cid ? meta : undefined
  }

  /** A listing record made from the model file, for one that has none. */
  async function metaOfFile(cid: string): Promise<ModelMeta | undefined> {
    try {
      const st = await stat(bytesPath(cid))
      const at = Math.floor(st.mtimeMs)
      return { cid, name: cid, size: st.size, addedAt: at, lastUsed: at }
    } catch {
      return undefined // removed by hand meanwhile
    }
  }

  const putBoth = (rec: ModelRecord) => {
    checkCid(rec?.cid)
    const meta = encodeValue(metaOf(rec))
    // Bytes first: a crash between the two leaves a model listed by its CID, not a listing of nothing.
    return run(() =>
      writeBatch([
        { path: bytesPath(rec.cid), data: rec.bytes },
        { path: metaPath(rec.cid), data: meta },
      ]),
    )
  }

  return {
    getModel: (cid) =>
      run(async () => {
        const bytes = await readMaybe(bytesPath(cid))
        const meta = bytes && ((await storedMeta(cid)) ?? (await metaOfFile(cid)))
        return meta && { ...metaOf(meta), size: bytes.byteLength, bytes }
      }),
    putModel: putBoth, // with its listing record too: the file store has nowhere else to keep the name
    putModelAndMeta: putBoth,
    listModelCids: () => run(() => cidsIn('models', '.onnx')),
    deleteModel: (cid) =>
      run(() =>
        writeBatch([
          { path: bytesPath(cid), data: null },
          { path: metaPath(cid), data: null },
        ]),
      ),
    listModelMeta: () =>
      run(async () => {
        const cids = await cidsIn('models', '.onnx')
        const have = new Set(cids)
        const stale = (await cidsIn('model-meta', '.cbor')).filter((c) => !have.has(c))
        await writeBatch(stale.map((c) => ({ path: metaPath(c), data: null })))
        const out: ModelMeta[] = []
        for (const cid of cids) {
          let meta = await storedMeta(cid)
          if (!meta) {
            meta = await metaOfFile(cid)
            if (!meta) continue
            await writeAtomic(metaPath(cid), encodeValue(meta)) // repaired once
          }
          out.push(meta)
        }
        return out
      }),
    touchModelMeta: (cid, at) =>
      run(async () => {
        const meta = await readRecord<unknown>(metaPath(cid))
        // The LRU clock only: not worth an fsync.
        if (isMeta(meta))
          await writeAtomic(metaPath(cid), encodeValue({ ...meta, lastUsed: at }), { sync: false })
      }),
    removeModel: (cid) =>
      run(() =>
        writeBatch([
          { path: bytesPath(cid), data: null },
          { path: metaPath(cid), data: null },
          { path: chunkDir(cid), data: null },
        ]),
      ),
    getModelChunks: (cid) =>
      run(async () => {
        const out: ModelChunkRecord[] = []
        for (const name of await list(chunkDir(cid))) {
          const index = name.endsWith('.chunk') ? Number(name.slice(0, -'.chunk'.length)) : Number.NaN
          const bytes = Number.isFinite(index) ? await readMaybe(chunkPath(cid, index)) : undefined
          if (bytes) out.push({ cid, index, bytes })
        }
        return out.sort((a, b) => a.index - b.index)
      }),
    async putModelChunks(recs) {
      for (const r of recs) {
        checkCid(r?.cid)
        if (!Number.isFinite(r.index)) throw new DOMException('a chunk without a numeric index', 'DataError')
      }
      await run(async () => {
        for (const cid of new Set(recs.map((r) => r.cid))) await mkdir(chunkDir(cid), { recursive: true })
        await writeBatch(recs.map((r) => ({ path: chunkPath(r.cid, r.index), data: r.bytes })))
      })
    },
    clearModelChunks: (cid) => run(() => writeBatch([{ path: chunkDir(cid), data: null }])),
  }
}
