/**
 * ONNX graph surgery for disputes: list a model's nodes with where each input comes from, add every
 * node output to the model's outputs (the trace model), and cut one node out as a model of its own
 * (what the referee runs). The graph's bytes are kept verbatim; only fields are added.
 */
import type { CID } from 'multiformats/cid'
import { assertOnnx } from '../models/onnx.ts'
import { concat } from '../shared/bytes.ts'
import { modelCid } from '../shared/cid.ts'
import { OnnxEditError } from '../shared/errors.ts'
import type { DType } from '../shared/tensor.ts'
import { type Field, fields, first, LEN, lenField, stringField, text, VARINT, varintField } from './proto.ts'

export interface Range {
  from: number
  to: number
}

/** Where a node's input comes from. Constant nodes are part of the model, like initializers. */
export type InputSource =
  | { kind: 'input' }
  | { kind: 'initializer' }
  | { kind: 'constant'; node: number }
  | { kind: 'node'; node: number }
  | { kind: 'absent' }

export interface NodeInput {
  name: string
  source: InputSource
  /** Read by one of the node's subgraphs (If, Loop, Scan) without being listed as an input. */
  implicit?: true
}

export interface GraphNode {
  /** Position in the graph's node list (file order, which ONNX requires to be topological). */
  index: number
  name: string
  opType: string
  domain: string
  /** A Constant node: part of the model, never disputed. */
  constant: boolean
  inputs: NodeInput[]
  /** Output names; '' for an optional output left out. */
  outputs: string[]
}

export interface OnnxModel {
  bytes: Uint8Array
  irVersion: number
  /** The GraphProto's payload in `bytes`. */
  graph: Range
  nodes: GraphNode[]
  /** Graph inputs the job feeds (initializers left out). */
  inputs: string[]
  outputs: string[]
  /** Where things sit in `bytes`, for copying them verbatim. */
  spans: {
    nodes: Range[]
    /** Graph input ValueInfoProtos by name. */
    inputs: Map<string, Range>
    /** Initializers by name, with the GraphProto field that holds them (5, or 15 when sparse). */
    initializers: Map<string, Range & { field: number }>
  }
}

/** A tensor type for an input of a cut-out node. */
export interface TensorSpec {
  name: string
  dtype: DType
  dims: readonly number[]
}

const MODEL_GRAPH = 7
const MODEL_IR_VERSION = 1
const GRAPH = { node: 1, name: 2, initializer: 5, input: 11, output: 12, sparse: 15 }
const NODE = { input: 1, output: 2, name: 3, opType: 4, attribute: 5, domain: 7 }
const ATTR_GRAPH = 6
const ATTR_GRAPHS = 11
const ELEM_TYPE: Record<DType, number> = { float32: 1, uint8: 2, int8: 3, int32: 6, int64: 7, bool: 9 }

/** Most top-level fields a ModelProto may have, and most nodes in its graph: far above real models. */
const MAX_MODEL_FIELDS = 4096
const MAX_NODES = 1_000_000
/** Deepest nesting of subgraphs (If, Loop, Scan bodies) followed; protobuf's own default is 100. */
const MAX_SUBGRAPH_DEPTH = 64

function lenFields(b: Uint8Array, r: Range, field: number): Field[] {
  const out: Field[] = []
  for (const f of fields(b, r.from, r.to)) if (f.field === field && f.wire === LEN) out.push(f)
  return out
}
const range = (f: Field): Range => ({ from: f.from, to: f.end })
const nameOf = (b: Uint8Array, r: Range, field = 1): string => {
  const f = first(b, r, field)
  return f ? text(b, f) : ''
}

/** Name of an initializer: TensorProto.name (8), or a SparseTensorProto's values.name. */
function initializerName(b: Uint8Array, f: Field): string {
  if (f.field === GRAPH.initializer) return nameOf(b, range(f), 8)
  const values = first(b, range(f), 1)
  return values ? nameOf(b, range(values), 8) : ''
}

/** Names a graph defines for its nodes: inputs and initializers. */
function graphDefines(b: Uint8Array, g: Range): Set<string> {
  const names = new Set<string>()
  for (const f of fields(b, g.from, g.to)) {
    if (f.wire !== LEN) continue
    if (f.field === GRAPH.input) names.add(nameOf(b, range(f)))
    else if (f.field === GRAPH.initializer || f.field === GRAPH.sparse) names.add(initializerName(b, f))
  }
  return names
}

/** Subgraph payloads held by a node's attributes. */
function subgraphs(b: Uint8Array, node: Range): Range[] {
  const out: Range[] = []
  for (const attr of lenFields(b, node, NODE.attribute)) {
    for (const f of fields(b, attr.from, attr.end)) {
      if (f.wire === LEN && (f.field === ATTR_GRAPH || f.field === ATTR_GRAPHS)) out.push(range(f))
    }
  }
  return out
}

/** Outer-scope names a subgraph reads (nested subgraphs included), in order of first read. */
function outerReads(b: Uint8Array, g: Range, depth = 0): string[] {
  if (depth > MAX_SUBGRAPH_DEPTH) throw new OnnxEditError(`subgraphs nested over ${MAX_SUBGRAPH_DEPTH} deep`)
  const defined = graphDefines(b, g)
  const reads = new Set<string>()
  const read = (name: string) => name && !defined.has(name) && reads.add(name)
  for (const f of lenFields(b, g, GRAPH.node)) {
    const node = range(f)
    for (const i of lenFields(b, node, NODE.input)) read(text(b, i))
    for (const sub of subgraphs(b, node)) outerReads(b, sub, depth + 1).forEach(read)
    for (const o of lenFields(b, node, NODE.output)) defined.add(text(b, o))
  }
  for (const o of lenFields(b, g, GRAPH.output)) read(nameOf(b, range(o)))
  return [...reads]
}

function parseNode(b: Uint8Array, r: Range, index: number, sources: Map<string, InputSource>): GraphNode {
  const strings = (field: number) => lenFields(b, r, field).map((f) => text(b, f))
  const opType = strings(NODE.opType)[0] ?? ''
  const domain = strings(NODE.domain)[0] ?? ''
  const sourceOf = (name: string): InputSource => {
    if (!name) return { kind: 'absent' }
    const s = sources.get(name)
    if (!s)
      throw new OnnxEditError(`node ${index} (${opType}) reads '${name}', which nothing before it defines`)
    return s
  }
  const explicit = strings(NODE.input)
  const inputs: NodeInput[] = explicit.map((name) => ({ name, source: sourceOf(name) }))
  const implicit = new Set(subgraphs(b, r).flatMap((g) => outerReads(b, g)))
  for (const name of implicit) {
    if (!explicit.includes(name)) inputs.push({ name, source: sourceOf(name), implicit: true })
  }
  const constant = opType === 'Constant' && (domain === '' || domain === 'ai.onnx')
  return {
    index,
    name: strings(NODE.name)[0] ?? '',
    opType,
    domain,
    constant,
    inputs,
    outputs: strings(NODE.output),
  }
}

/** Parses a ModelProto's graph structure; NotOnnxError if the bytes are not a model. */
export function parseModel(bytes: Uint8Array): OnnxModel {
  assertOnnx(bytes, 'the model')
  let graphField: Field | undefined
  let irVersion = 0
  let count = 0
  for (const f of fields(bytes)) {
    if (++count > MAX_MODEL_FIELDS)
      throw new OnnxEditError(`the model has over ${MAX_MODEL_FIELDS} top-level fields`)
    if (f.field === MODEL_GRAPH && f.wire === LEN) graphField ??= f
    else if (f.field === MODEL_IR_VERSION && f.wire === VARINT) irVersion = f.value
  }
  const graph = range(graphField!)
  // Maps, not objects: a model may name a value `constructor` or `__proto__`.
  const spans: OnnxModel['spans'] = { nodes: [], inputs: new Map(), initializers: new Map() }
  const sources = new Map<string, InputSource>()
  const declared: string[] = []
  const outputs: string[] = []
  const nodeFields: Field[] = []
  for (const f of fields(bytes, graph.from, graph.to)) {
    if (f.wire !== LEN) continue
    if (f.field === GRAPH.node) {
      if (nodeFields.push(f) > MAX_NODES) throw new OnnxEditError(`the graph has over ${MAX_NODES} nodes`)
    } else if (f.field === GRAPH.output) outputs.push(nameOf(bytes, range(f)))
    else if (f.field === GRAPH.input) {
      const name = nameOf(bytes, range(f))
      declared.push(name)
      spans.inputs.set(name, range(f))
    } else if (f.field === GRAPH.initializer || f.field === GRAPH.sparse) {
      spans.initializers.set(initializerName(bytes, f), { ...range(f), field: f.field })
    }
  }
  // before IR 4 initializers were listed among the inputs too; they are still the model's, not the job's
  const inputs = declared.filter((name) => !spans.initializers.has(name))
  for (const name of inputs) sources.set(name, { kind: 'input' })
  for (const name of spans.initializers.keys()) sources.set(name, { kind: 'initializer' })
  const nodes = nodeFields.map((f, index) => {
    spans.nodes.push(range(f))
    const node = parseNode(bytes, range(f), index, sources)
    const kind = node.constant ? 'constant' : 'node'
    for (const o of node.outputs) if (o) sources.set(o, { kind, node: index })
    return node
  })
  return { bytes, irVersion, graph, nodes, inputs, outputs, spans }
}

const modelOf = (m: OnnxModel | Uint8Array): OnnxModel => (m instanceof Uint8Array ? parseModel(m) : m)

/** The top-level nodes of a model, in file order. */
export const graphNodes = (model: OnnxModel | Uint8Array): GraphNode[] => modelOf(model).nodes

/** What the trace model outputs: the model's outputs, then every computing node's outputs once. */
export function traceOutputs(model: OnnxModel | Uint8Array): string[] {
  const m = modelOf(model)
  const names = new Set(m.outputs)
  for (const node of m.nodes) {
    if (!node.constant) for (const o of node.outputs) if (o) names.add(o)
  }
  return [...names]
}

/** The ModelProto with its graph payload replaced; every other field verbatim, in order. */
function withGraph(m: OnnxModel, graph: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = []
  for (const f of fields(m.bytes))
    parts.push(
      f.field === MODEL_GRAPH && f.wire === LEN
        ? lenField(MODEL_GRAPH, graph)
        : m.bytes.subarray(f.start, f.end),
    )
  return concat(parts)
}

/** A ValueInfoProto with only a name: ORT takes an output's type from the graph. */
const namedValue = (name: string) => stringField(1, name)

/**
 * The trace model: the graph verbatim with node outputs appended to its outputs; `names` picks a
 * subset (after the model's own outputs), so a big input can be traced in slices.
 */
export function withIntermediateOutputs(
  model: OnnxModel | Uint8Array,
  names?: readonly string[],
): Uint8Array {
  const m = modelOf(model)
  let extra = traceOutputs(m).slice(m.outputs.length)
  if (names) {
    const produced = new Set(m.nodes.flatMap((n) => n.outputs.filter(Boolean)))
    for (const name of names) {
      if (!produced.has(name)) throw new OnnxEditError(`no node outputs '${name}'`)
    }
    extra = [...new Set(names)].filter((name) => !m.outputs.includes(name))
  }
  const graph = m.bytes.subarray(m.graph.from, m.graph.to)
  return withGraph(m, concat([graph, ...extra.map((n) => lenField(GRAPH.output, namedValue(n)))]))
}

function valueInfo(spec: TensorSpec): Uint8Array {
  const dims = spec.dims.map((d) => lenField(1, varintField(1, d)))
  const tensorType = concat([varintField(1, ELEM_TYPE[spec.dtype]), lenField(2, concat(dims))])
  return concat([stringField(1, spec.name), lenField(2, lenField(1, tensorType))])
}

/**
 * Node `index` alone as a model: the Constants and initializers it reads are copied in, job inputs
 * keep the model's declared types, other inputs take theirs from `inputs`.
 */
export function singleNodeModel(
  model: OnnxModel | Uint8Array,
  index: number,
  inputs: readonly TensorSpec[],
): Uint8Array {
  const m = modelOf(model)
  const node = m.nodes[index]
  if (!node) throw new OnnxEditError(`no node ${index} in a graph of ${m.nodes.length}`)
  const copy = (r: Range) => m.bytes.subarray(r.from, r.to)
  const before: Uint8Array[] = []
  const parts: Uint8Array[] = []
  const seen = new Set<string>()
  for (const { name, source } of node.inputs) {
    if (seen.has(name) || source.kind === 'absent') continue
    seen.add(name)
    if (source.kind === 'constant') before.push(lenField(GRAPH.node, copy(m.spans.nodes[source.node]!)))
    else if (source.kind === 'initializer') {
      const init = m.spans.initializers.get(name)!
      parts.push(lenField(init.field, copy(init)))
      const declared = m.spans.inputs.get(name)
      if (declared) parts.push(lenField(GRAPH.input, copy(declared)))
    } else if (source.kind === 'input') parts.push(lenField(GRAPH.input, copy(m.spans.inputs.get(name)!)))
    else {
      const spec = inputs.find((s) => s.name === name)
      if (!spec) throw new OnnxEditError(`node ${index} (${node.opType}) needs the type of input '${name}'`)
      parts.push(lenField(GRAPH.input, valueInfo(spec)))
    }
  }
  const outputs = node.outputs.filter(Boolean).map((o) => lenField(GRAPH.output, namedValue(o)))
  const graph = concat([
    ...before,
    lenField(GRAPH.node, copy(m.spans.nodes[index]!)),
    stringField(GRAPH.name, `node-${index}`),
    ...parts,
    ...outputs,
  ])
  return withGraph(m, graph)
}

export interface TraceModel {
  bytes: Uint8Array
  /** The trace model's own CID (derived; it differs from the model's). */
  cid: CID
  outputs: string[]
}

export interface TraceCache {
  /** The trace model of `model`, whose CID is `cid`, built once while it stays in the cache. */
  get(cid: string, model: OnnxModel | Uint8Array): Promise<TraceModel>
}

/** A least-recently-used cache of trace models, keyed by the original model's CID. */
export function createTraceCache(max = 2): TraceCache {
  const entries = new Map<string, Promise<TraceModel>>()
  const build = async (model: OnnxModel | Uint8Array): Promise<TraceModel> => {
    const m = modelOf(model)
    const bytes = withIntermediateOutputs(m)
    return { bytes, cid: await modelCid(bytes), outputs: traceOutputs(m) }
  }
  return {
    get(cid, model) {
      let entry = entries.get(cid)
      if (entry) entries.delete(cid)
      else {
        const built = build(model)
        built.catch(() => entries.get(cid) === built && entries.delete(cid))
        entry = built
      }
      entries.set(cid, entry)
      while (entries.size > max) entries.delete(entries.keys().next().value!)
      return entry
    },
  }
}
