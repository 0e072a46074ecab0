/**
 * Writes deterministic MLP ONNX models and their catalog into public/models/.
 * Usage: npx tsx scripts/gen-models.ts   (same bytes every run; safe to re-run)
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import protobuf from 'protobufjs'
import { modelCid } from '../src/shared/cid.ts'
import { type MlpSpec, mlpWeights } from '../src/shared/mlp.ts'

/** Bench sizes were picked with onnxruntime-node (1 thread); see bench/README.md for timings. */
export const MODELS: { name: string; description: string; spec: MlpSpec }[] = [
  { name: 'mlp-tiny', description: 'Tiny MLP for tests', spec: { seed: 1, layers: [16, 32, 8], batch: 1 } },
  // Same shapes, other weights: what a contributor "running a different model" computes in tests.
  {
    name: 'mlp-tiny-alt',
    description: 'Tiny MLP, other weights',
    spec: { seed: 2, layers: [16, 32, 8], batch: 1 },
  },
  {
    name: 'mlp-s',
    description: 'Bench MLP, about 1 ms on 1-thread WASM',
    spec: { seed: 2, layers: [256, 512, 256], batch: 64 },
  },
  {
    name: 'mlp-m',
    description: 'Bench MLP, about 10 ms on 1-thread WASM',
    spec: { seed: 3, layers: [512, 1024, 512], batch: 160 },
  },
  {
    name: 'mlp-l',
    description: 'Bench MLP, about 100 ms on 1-thread WASM',
    spec: { seed: 4, layers: [1024, 2048, 1024], batch: 448 },
  },
]

const OPSET = 17
const IR_VERSION = 8
const FLOAT = 1 // TensorProto.DataType.FLOAT

/** The subset of onnx.proto (field numbers as upstream) that these graphs need. */
const onnx = protobuf.Root.fromJSON({
  nested: {
    onnx: {
      nested: {
        ModelProto: {
          fields: {
            irVersion: { type: 'int64', id: 1 },
            producerName: { type: 'string', id: 2 },
            producerVersion: { type: 'string', id: 3 },
            docString: { type: 'string', id: 6 },
            graph: { type: 'GraphProto', id: 7 },
            opsetImport: { rule: 'repeated', type: 'OperatorSetIdProto', id: 8 },
          },
        },
        OperatorSetIdProto: {
          fields: { domain: { type: 'string', id: 1 }, version: { type: 'int64', id: 2 } },
        },
        GraphProto: {
          fields: {
            node: { rule: 'repeated', type: 'NodeProto', id: 1 },
            name: { type: 'string', id: 2 },
            initializer: { rule: 'repeated', type: 'TensorProto', id: 5 },
            input: { rule: 'repeated', type: 'ValueInfoProto', id: 11 },
            output: { rule: 'repeated', type: 'ValueInfoProto', id: 12 },
          },
        },
        NodeProto: {
          fields: {
            input: { rule: 'repeated', type: 'string', id: 1 },
            output: { rule: 'repeated', type: 'string', id: 2 },
            name: { type: 'string', id: 3 },
            opType: { type: 'string', id: 4 },
          },
        },
        TensorProto: {
          fields: {
            dims: { rule: 'repeated', type: 'int64', id: 1 },
            dataType: { type: 'int32', id: 2 },
            name: { type: 'string', id: 8 },
            rawData: { type: 'bytes', id: 9 },
          },
        },
        ValueInfoProto: { fields: { name: { type: 'string', id: 1 }, type: { type: 'TypeProto', id: 2 } } },
        TypeProto: {
          oneofs: { value: { oneof: ['tensorType'] } },
          fields: { tensorType: { type: 'Tensor', id: 1 } },
          nested: {
            Tensor: {
              fields: { elemType: { type: 'int32', id: 1 }, shape: { type: 'TensorShapeProto', id: 2 } },
            },
          },
        },
        TensorShapeProto: {
          fields: { dim: { rule: 'repeated', type: 'Dimension', id: 1 } },
          nested: { Dimension: { fields: { dimValue: { type: 'int64', id: 1 } } } },
        },
      },
    },
  },
})
const ModelProto = onnx.lookupType('onnx.ModelProto')

/** Float32 little-endian bytes (TensorProto.raw_data is always little-endian). */
function leBytes(a: Float32Array): Uint8Array {
  const out = new Uint8Array(a.length * 4)
  const view = new DataView(out.buffer)
  for (let i = 0; i < a.length; i++) view.setFloat32(i * 4, a[i]!, true)
  return out
}

const valueInfo = (name: string, dims: number[]) => ({
  name,
  type: { tensorType: { elemType: FLOAT, shape: { dim: dims.map((dimValue) => ({ dimValue })) } } },
})

/** A float32 graph: the parts that differ between the generated models (tests and benchmarks). */
export interface FloatGraph {
  name: string
  nodes: { name?: string; opType: string; input: string[]; output: string[] }[]
  initializers: { name: string; dims: number[]; data: Float32Array }[]
  inputs: [name: string, dims: number[]][]
  outputs: [name: string, dims: number[]][]
}

/** Encodes an opset-17 ModelProto around a float32 graph. */
export function encodeFloatModel(
  g: FloatGraph,
  meta: { producerName: string; producerVersion?: string; docString?: string },
): Uint8Array {
  const model = {
    irVersion: IR_VERSION,
    ...meta,
    opsetImport: [{ domain: '', version: OPSET }],
    graph: {
      name: g.name,
      node: g.nodes,
      initializer: g.initializers.map((t) => ({
        name: t.name,
        dims: t.dims,
        dataType: FLOAT,
        rawData: leBytes(t.data),
      })),
      input: g.inputs.map(([name, dims]) => valueInfo(name, dims)),
      output: g.outputs.map(([name, dims]) => valueInfo(name, dims)),
    },
  }
  return ModelProto.encode(ModelProto.fromObject(model)).finish()
}

/** x[batch, in] → (MatMul + Add + Relu)* → MatMul + Add → y[batch, out]. */
export function mlpModelBytes(spec: MlpSpec): Uint8Array {
  const weights = mlpWeights(spec)
  const nodes: FloatGraph['nodes'] = []
  const initializers: FloatGraph['initializers'] = []
  let h = 'x'
  weights.forEach(({ W, b }, l) => {
    const [nIn, nOut] = [spec.layers[l]!, spec.layers[l + 1]!]
    const last = l === weights.length - 1
    initializers.push({ name: `W${l}`, dims: [nIn, nOut], data: W }, { name: `b${l}`, dims: [nOut], data: b })
    nodes.push({ name: `matmul${l}`, opType: 'MatMul', input: [h, `W${l}`], output: [`mm${l}`] })
    const added = last ? 'y' : `add${l}`
    nodes.push({ name: `add${l}`, opType: 'Add', input: [`mm${l}`, `b${l}`], output: [added] })
    if (!last) nodes.push({ name: `relu${l}`, opType: 'Relu', input: [added], output: [`h${l}`] })
    h = `h${l}`
  })
  const graph: FloatGraph = {
    name: 'mlp',
    nodes,
    initializers,
    inputs: [['x', [spec.batch, spec.layers[0]!]]],
    outputs: [['y', [spec.batch, spec.layers.at(-1)!]]],
  }
  return encodeFloatModel(graph, {
    producerName: 'peer-compute gen-models',
    producerVersion: '1',
    docString: `MLP ${JSON.stringify(spec)}`,
  })
}

export interface CatalogEntry {
  name: string
  cid: string
  size: number
  file: string
  inputs: { name: string; dtype: 'float32'; dims: number[] }[]
  outputs: { name: string; dtype: 'float32'; dims: number[] }[]
  task: 'tensor'
  license: string
  description: string
  mlp: MlpSpec
}

async function main(): Promise<void> {
  const dir = resolve(import.meta.dirname, '../public/models')
  mkdirSync(dir, { recursive: true })
  const catalog: CatalogEntry[] = []
  for (const { name, description, spec } of MODELS) {
    const bytes = mlpModelBytes(spec)
    const path = resolve(dir, `${name}.onnx`)
    const same = (() => {
      try {
        return Buffer.compare(readFileSync(path), bytes) === 0
      } catch {
        return false
      }
    })()
    if (!same) writeFileSync(path, bytes)
    catalog.push({
      name,
      cid: (await modelCid(bytes)).toString(),
      size: bytes.length,
      file: `models/${name}.onnx`,
      inputs: [{ name: 'x', dtype: 'float32', dims: [spec.batch, spec.layers[0]!] }],
      outputs: [{ name: 'y', dtype: 'float32', dims: [spec.batch, spec.layers.at(-1)!] }],
      task: 'tensor',
      license: 'CC0-1.0 (generated)',
      description: `${description}: layers ${spec.layers.join('→')}, batch ${spec.batch}`,
      mlp: spec,
    })
    console.log(`${name}.onnx ${(bytes.length / 1e6).toFixed(2)} MB ${same ? '(unchanged)' : '(written)'}`)
  }
  // Keep the entries other scripts own (vendor models from copy-models.ts), after ours.
  const path = resolve(dir, 'catalog.json')
  const others = existsSync(path)
    ? (JSON.parse(readFileSync(path, 'utf8')) as { mlp?: unknown }[]).filter((e) => e.mlp == null)
    : []
  writeFileSync(path, `${JSON.stringify([...catalog, ...others], null, 2)}\n`)
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main()
