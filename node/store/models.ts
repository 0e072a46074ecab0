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

const bytesPath = (ctx: Ctx, cid: string) => ctx.path('models', `${cidName(cid)}.onnx`)
const metaPath = (ctx: Ctx, cid: string) => ctx.path('model-meta', `${cidName(cid)}.cbor`)
const chunkDir = (ctx: Ctx, cid: string) => ctx.path('model-chunks', cidName(cid))
const chunkPath = (ctx: Ctx, cid: string, index: number) =>
  ctx.path('model-chunks', cidName(cid), `${index}.chunk`)

/** CIDs named by files with `ext` in `folder`, in key order. */
const cidsIn = async (ctx: Ctx, folder: string, ext: string) =>
  (await list(ctx.path(folder)))
    .filter((n) => n.endsWith(ext))
    .map((n) => cidOfName(n.slice(0, -ext.length)))
    .filter((c): c is string => c !== undefined)
    .sort()

/** The stored listing record, or undefined when missing or not one. */
async function storedMeta(ctx: Ctx, cid: string): Promise<ModelMeta | undefined> {
  const meta = await readRecord<unknown>(metaPath(ctx, cid))
  return isMeta(meta) && meta.cid === cid ? meta : undefined
}

/** A listing record made from the model file, for one that has none. */
async function metaOfFile(ctx: Ctx, cid: string): Promise<ModelMeta | undefined> {
  try {
    const st = await stat(bytesPath(ctx, cid))
    const at = Math.floor(st.mtimeMs)
    return { cid, name: cid, size: st.size, addedAt: at, lastUsed: at }
  } catch {
    return undefined // removed by hand meanwhile
  }
}

/** Every model's listing record; drops records of removed models and repairs missing ones. */
async function listMeta(ctx: Ctx): Promise<ModelMeta[]> {
  const cids = await cidsIn(ctx, 'models', '.onnx')
  const have = new Set(cids)
  const stale = (await cidsIn(ctx, 'model-meta', '.cbor')).filter((c) => !have.has(c))
  await writeBatch(stale.map((c) => ({ path: metaPath(ctx, c), data: null })))
  const out: ModelMeta[] = []
  for (const cid of cids) {
    let meta = await storedMeta(ctx, cid)
    if (!meta) {
      meta = await metaOfFile(ctx, cid)
      if (!meta) continue
      await writeAtomic(metaPath(ctx, cid), encodeValue(meta)) // repaired once
    }
    out.push(meta)
  }
  return out
}

export function modelFiles(ctx: Ctx): ModelsPart {
  const run = <T>(fn: () => Promise<T>) => ctx.run('models', fn)

  const putBoth = (rec: ModelRecord) => {
    checkCid(rec?.cid)
    const meta = encodeValue(metaOf(rec))
    // Bytes first: a crash between the two leaves a model listed by its CID, not a listing of nothing.
    return run(() =>
      writeBatch([
        { path: bytesPath(ctx, rec.cid), data: rec.bytes },
        { path: metaPath(ctx, rec.cid), data: meta },
      ]),
    )
  }

  return {
    getModel: (cid) =>
      run(async () => {
        const bytes = await readMaybe(bytesPath(ctx, cid))
        const meta = bytes && ((await storedMeta(ctx, cid)) ?? (await metaOfFile(ctx, cid)))
        return meta && { ...metaOf(meta), size: bytes.byteLength, bytes }
      }),
    putModel: putBoth, // with its listing record too: the file store has nowhere else to keep the name
    putModelAndMeta: putBoth,
    listModelCids: () => run(() => cidsIn(ctx, 'models', '.onnx')),
    deleteModel: (cid) =>
      run(() =>
        writeBatch([
          { path: bytesPath(ctx, cid), data: null },
          { path: metaPath(ctx, cid), data: null },
        ]),
      ),
    listModelMeta: () => run(() => listMeta(ctx)),
    touchModelMeta: (cid, at) =>
      run(async () => {
        const meta = await readRecord<unknown>(metaPath(ctx, cid))
        // The LRU clock only: not worth an fsync.
        if (isMeta(meta))
          await writeAtomic(metaPath(ctx, cid), encodeValue({ ...meta, lastUsed: at }), { sync: false })
      }),
    removeModel: (cid) =>
      run(() =>
        writeBatch([
          { path: bytesPath(ctx, cid), data: null },
          { path: metaPath(ctx, cid), data: null },
          { path: chunkDir(ctx, cid), data: null },
        ]),
      ),
    ...chunkFiles(ctx, run),
  }
}

/** Partial transfers: one file per chunk under model-chunks/<cid>/. */
function chunkFiles(
  ctx: Ctx,
  run: <T>(fn: () => Promise<T>) => Promise<T>,
): Pick<ModelsPart, 'getModelChunks' | 'putModelChunks' | 'clearModelChunks'> {
  return {
    getModelChunks: (cid) =>
      run(async () => {
        const out: ModelChunkRecord[] = []
        for (const name of await list(chunkDir(ctx, cid))) {
          const index = name.endsWith('.chunk') ? Number(name.slice(0, -'.chunk'.length)) : Number.NaN
          const bytes = Number.isFinite(index) ? await readMaybe(chunkPath(ctx, cid, index)) : undefined
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
        for (const cid of new Set(recs.map((r) => r.cid)))
          await mkdir(chunkDir(ctx, cid), { recursive: true })
        await writeBatch(recs.map((r) => ({ path: chunkPath(ctx, r.cid, r.index), data: r.bytes })))
      })
    },
    clearModelChunks: (cid) => run(() => writeBatch([{ path: chunkDir(ctx, cid), data: null }])),
  }
}
