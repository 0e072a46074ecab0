/** Small ONNX models written in tests: a graph of initializer-free nodes, encoded with protobufjs. */
import protobuf from 'protobufjs'
import type { DType } from '../../src/shared/tensor.ts'

const root = protobuf.Root.fromJSON({
  nested: {
    Model: {
      fields: {
        irVersion: { type: 'int64', id: 1 },
        graph: { type: 'Graph', id: 7 },
        opsetImport: { rule: 'repeated', type: 'Opset', id: 8 },
      },
    },
    Opset: { fields: { domain: { type: 'string', id: 1 }, version: { type: 'int64', id: 2 } } },
    Graph: {
      fields: {
        node: { rule: 'repeated', type: 'Node', id: 1 },
        name: { type: 'string', id: 2 },
        input: { rule: 'repeated', type: 'Value', id: 11 },
        output: { rule: 'repeated', type: 'Value', id: 12 },
      },
    },
    Node: {
      fields: {
        input: { rule: 'repeated', type: 'string', id: 1 },
        output: { rule: 'repeated', type: 'string', id: 2 },
        opType: { type: 'string', id: 4 },
      },
    },
    Value: { fields: { name: { type: 'string', id: 1 }, type: { type: 'Type', id: 2 } } },
    Type: { fields: { tensorType: { type: 'TensorType', id: 1 } } },
    TensorType: { fields: { elemType: { type: 'int32', id: 1 }, shape: { type: 'Shape', id: 2 } } },
    Shape: { fields: { dim: { rule: 'repeated', type: 'Dim', id: 1 } } },
    Dim: { fields: { dimValue: { type: 'int64', id: 1 }, dimParam: { type: 'string', id: 2 } } },
  },
})

const ELEM_TYPE: Record<DType, number> = { float32: 1, uint8: 2, int8: 3, int32: 6, int64: 7, bool: 9 }

export interface GraphValue {
  name: string
  dtype: DType
  /** Numbers are fixed dims, strings symbolic ones. */
  dims: (number | string)[]
}

export interface GraphSpec {
  name: string
  nodes: { op: string; inputs: string[]; outputs: string[] }[]
  inputs: GraphValue[]
  outputs: GraphValue[]
}

export function onnxModel(g: GraphSpec): Uint8Array {
  const value = (v: GraphValue) => ({
    name: v.name,
    type: {
      tensorType: {
        elemType: ELEM_TYPE[v.dtype],
        shape: { dim: v.dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  })
  const graph = {
    name: g.name,
    node: g.nodes.map((n) => ({ opType: n.op, input: n.inputs, output: n.outputs })),
    input: g.inputs.map(value),
    output: g.outputs.map(value),
  }
  const Model = root.lookupType('Model')
  return Model.encode(Model.fromObject({ irVersion: 8, opsetImport: [{ version: 17 }], graph })).finish()
}

/** Identity on one input per dtype (`in_<dtype>` → `out_<dtype>`, dims [2, 3]). */
export const identityModel = (dtypes: readonly DType[]): Uint8Array =>
  onnxModel({
    name: 'identity',
    nodes: dtypes.map((d) => ({ op: 'Identity', inputs: [`in_${d}`], outputs: [`out_${d}`] })),
    inputs: dtypes.map((d) => ({ name: `in_${d}`, dtype: d, dims: [2, 3] })),
    outputs: dtypes.map((d) => ({ name: `out_${d}`, dtype: d, dims: [2, 3] })),
  })

/**
 * `k` chained MatMuls of x [n, n] by itself: about 2·k·n³ flops, as slow as a test needs. x filled
 * with 1/n is a fixed point (y = x), so the result stays finite and checkable.
 */
export const matmulChain = (k: number): Uint8Array =>
  onnxModel({
    name: 'matmul-chain',
    nodes: Array.from({ length: k }, (_, i) => ({
      op: 'MatMul',
      inputs: [i ? `h${i}` : 'x', 'x'],
      outputs: [i === k - 1 ? 'y' : `h${i + 1}`],
    })),
    inputs: [{ name: 'x', dtype: 'float32', dims: ['n', 'n'] }],
    outputs: [{ name: 'y', dtype: 'float32', dims: ['n', 'n'] }],
  })
