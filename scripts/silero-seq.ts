/**
 * Derives "silero-vad-v5-seq" from Silero VAD v5: its graph becomes the body of an ONNX Loop over
 * frames, so one job (one session.run) carries the recurrent state across a whole chunk of audio.
 *
 *   frames [T, 576] (64 context + 512 new samples at 16 kHz), h0 [2, 1, 128]
 *     → probs [T] (speech probability per frame), state_out [2, 1, 128]
 *
 * The sample rate is fixed to 16 kHz by an initializer that the body reads from the outer scope.
 */
import { concat } from '../src/shared/bytes.ts'
import {
  attrGraph,
  attrInt,
  ELEM,
  fieldString,
  initializer,
  node,
  pb,
  readFields,
  valueInfo,
} from './onnx-wire.ts'

export const FRAME = 512
export const CONTEXT = 64

// ModelProto.graph = 7; GraphProto: node 1, name 2, initializer 5, input 11, output 12.
const MODEL_GRAPH = 7
const G = { node: 1, name: 2, initializer: 5, input: 11, output: 12 } as const

export function sileroSeqBytes(silero: Uint8Array): Uint8Array {
  const model = readFields(silero)
  const graphField = model.find((f) => f.no === MODEL_GRAPH)
  if (!graphField?.bytes) throw new Error('not an ONNX model: no graph')
  const graph = readFields(graphField.bytes)
  const valueInfos = (no: number) => new Map(graph.filter((f) => f.no === no).map((f) => [name(f.bytes!), f]))
  const inputs = valueInfos(G.input)
  const outputs = valueInfos(G.output)
  for (const n of ['input', 'state', 'sr']) if (!inputs.has(n)) throw new Error(`Silero input ${n} missing`)
  for (const n of ['output', 'stateN']) if (!outputs.has(n)) throw new Error(`Silero output ${n} missing`)

  // Loop body: (iter, cond, state) → (cond, stateN, output); frame `iter` of the outer `frames` is `input`.
  const body = concat([
    pb.bytes(
      G.node,
      node('Gather', 'seq_gather_frame', ['frames', 'seq_iter'], ['seq_frame'], [attrInt('axis', 0)]),
    ),
    pb.bytes(G.node, node('Unsqueeze', 'seq_unsqueeze', ['seq_frame', 'seq_axes0'], ['input'])),
    pb.bytes(G.node, node('Identity', 'seq_cond', ['seq_cond_in'], ['seq_cond_out'])),
    ...graph.filter((f) => f.no !== G.input && f.no !== G.output && f.no !== G.name).map((f) => f.raw),
    pb.str(G.name, 'silero_step'),
    pb.bytes(G.input, valueInfo('seq_iter', ELEM.int64, [])),
    pb.bytes(G.input, valueInfo('seq_cond_in', ELEM.bool, [])),
    inputs.get('state')!.raw,
    pb.bytes(G.output, valueInfo('seq_cond_out', ELEM.bool, [])),
    outputs.get('stateN')!.raw,
    outputs.get('output')!.raw,
  ])

  const outer = concat([
    pb.bytes(G.node, node('Shape', 'seq_shape', ['frames'], ['seq_frames_shape'])),
    pb.bytes(
      G.node,
      node('Gather', 'seq_count', ['seq_frames_shape', 'seq_zero'], ['seq_trip'], [attrInt('axis', 0)]),
    ),
    pb.bytes(
      G.node,
      node(
        'Loop',
        'seq_loop',
        ['seq_trip', 'seq_true', 'h0'],
        ['state_out', 'seq_probs'],
        [attrGraph('body', body)],
      ),
    ),
    pb.bytes(G.node, node('Reshape', 'seq_flatten', ['seq_probs', 'seq_flat'], ['probs'])),
    pb.str(G.name, 'silero_vad_v5_seq'),
    pb.bytes(G.initializer, initializer('sr', ELEM.int64, [], [16000n])),
    pb.bytes(G.initializer, initializer('seq_zero', ELEM.int64, [], [0n])),
    pb.bytes(G.initializer, initializer('seq_axes0', ELEM.int64, [1], [0n])),
    pb.bytes(G.initializer, initializer('seq_flat', ELEM.int64, [1], [-1n])),
    pb.bytes(G.initializer, initializer('seq_true', ELEM.bool, [], [true])),
    pb.bytes(G.input, valueInfo('frames', ELEM.float, ['T', FRAME + CONTEXT])),
    pb.bytes(G.input, valueInfo('h0', ELEM.float, [2, 1, 128])),
    pb.bytes(G.output, valueInfo('probs', ELEM.float, ['T'])),
    pb.bytes(G.output, valueInfo('state_out', ELEM.float, [2, 1, 128])),
  ])
  return concat(model.map((f) => (f.no === MODEL_GRAPH ? pb.bytes(MODEL_GRAPH, outer) : f.raw)))
}

const name = (valueInfoBytes: Uint8Array) => fieldString(readFields(valueInfoBytes), 1)
