/**
 * Task pipelines bound to a Peer: jobs go through `peer.submit`, fan-out is sized to the swarm, and
 * task assets (the OCR dictionary) come from the catalog, hash-checked like models.
 *   const tasks = createTasks(peer)
 *   const { text } = await tasks.ocr(await decodeImage(file))
 */
import type { SubmitOptions } from '../jobs/requester.ts'
import type { Catalog } from '../models/catalog.ts'
import type { Peer } from '../peer.ts'
import { modelCid } from '../shared/cid.ts'
import { ModelIntegrityError, UnknownModelError } from '../shared/errors.ts'
import type { Submit } from './fanout.ts'
import { loadDictionary } from './ocr/ctc.ts'
import type { RgbaImage } from './ocr/image.ts'
import { OCR_REC_MODEL, type OcrOptions, type OcrResult, ocrImages } from './ocr/pipeline.ts'
import { decodeAudio } from './vad/decode.ts'
import { type VadOptions, type VadResult, vad } from './vad/pipeline.ts'

/** Job timeout for task parts: a cold contributor first fetches the model and creates a session. */
const PART_TIMEOUT_MS = 120_000

/** `peer.submit` as a Submit; `extra` (e.g. a verification policy) applies to every part. */
export const peerSubmit =
  (peer: Peer, extra: SubmitOptions = {}): Submit =>
  (model, inputs, opts) =>
    peer.submit(model, inputs, { timeoutMs: PART_TIMEOUT_MS, ...extra, ...opts })

/** Parts worth having in flight: the free slots of directly connected contributors (1 to 16). */
export function swarmConcurrency(peer: Peer): number {
  const slots = peer
    .peers()
    .filter((p) => p.direct && p.advert.contributing)
    .reduce((n, p) => n + Math.max(1, p.advert.maxSlots), 0)
  return Math.max(1, Math.min(16, slots))
}

const assets = new Map<string, Promise<Uint8Array>>()

/** Bytes of a model's named asset, checked against the CID the catalog gives for it. */
export function loadAsset(catalog: Catalog, model: string, name: string): Promise<Uint8Array> {
  const entry = catalog.byName(model)
  const asset = entry?.assets?.find((a) => a.name === name)
  if (!entry || !asset) return Promise.reject(new UnknownModelError(`catalog has no ${name} for ${model}`))
  let p = assets.get(asset.cid)
  if (!p) {
    p = (async () => {
      const res = await fetch(catalog.url({ ...entry, file: asset.file })) // same base as model files
      if (!res.ok) throw new UnknownModelError(`${asset.file}: HTTP ${res.status}`)
      const bytes = new Uint8Array(await res.arrayBuffer())
      const cid = (await modelCid(bytes)).toString()
      if (cid !== asset.cid)
        throw new ModelIntegrityError(`${asset.file} hashes to ${cid}, expected ${asset.cid}`)
      return bytes
    })()
    p.catch(() => assets.delete(asset.cid))
    assets.set(asset.cid, p)
  }
  return p
}

/** `submit` overrides the job options of every part, e.g. `{ policy: { redundancy: 1, quorum: 1 } }`. */
export type TaskOcrOptions = Partial<Omit<OcrOptions, 'dictionary' | 'submit'>> & { submit?: SubmitOptions }
export type TaskVadOptions = Partial<Omit<VadOptions, 'submit'>> & { submit?: SubmitOptions }

export interface Tasks {
  ocr(image: RgbaImage, opts?: TaskOcrOptions): Promise<OcrResult>
  /** A batch of pages: one detection job per page, all their lines fanned out together. */
  ocrPages(images: RgbaImage[], opts?: TaskOcrOptions): Promise<OcrResult[]>
  /** Audio file bytes (any format the browser decodes), or 16 kHz mono samples. */
  vad(audio: ArrayBuffer | Float32Array, opts?: TaskVadOptions): Promise<VadResult>
}

export function createTasks(peer: Peer): Tasks {
  const ocrPages = async (images: RgbaImage[], { submit, ...opts }: TaskOcrOptions = {}) => {
    const text = new TextDecoder().decode(await loadAsset(peer.catalog, OCR_REC_MODEL, 'dictionary'))
    return ocrImages(images, {
      concurrency: swarmConcurrency(peer),
      ...opts,
      submit: peerSubmit(peer, submit),
      dictionary: loadDictionary(text),
    })
  }
  return {
    ocrPages,
    ocr: async (image, opts) => (await ocrPages([image], opts))[0]!,
    async vad(audio, { submit, ...opts } = {}) {
      const samples = audio instanceof Float32Array ? audio : await decodeAudio(audio)
      return vad(samples, { concurrency: swarmConcurrency(peer), ...opts, submit: peerSubmit(peer, submit) })
    },
  }
}
