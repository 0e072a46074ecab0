/**
 * Protobuf wire-format helpers for editing ONNX files without a full onnx.proto schema: fields of a
 * message are read as raw byte ranges and unknown ones are copied through byte for byte.
 */

import { concat } from '../src/shared/bytes.ts'

export interface WireField {
  no: number
  /** Wire type: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32. */
  type: number
  /** The whole field, tag included, for copying it through unchanged. */
  raw: Uint8Array
  /** Payload of a length-delimited field. */
  bytes?: Uint8Array
  value?: bigint
}

function readVarint(b: Uint8Array, p: number): [bigint, number] {
  let result = 0n
  let shift = 0n
  for (;;) {
    if (p >= b.length) throw new Error('truncated varint')
    const x = b[p++]!
    result |= BigInt(x & 0x7f) << shift
    shift += 7n
    if ((x & 0x80) === 0) return [result, p]
  }
}

/** Splits a message into its top-level fields, in order. */
export function readFields(b: Uint8Array): WireField[] {
  const out: WireField[] = []
  let p = 0
  while (p < b.length) {
    const start = p
    const [key, afterKey] = readVarint(b, p)
    const no = Number(key >> 3n)
    const type = Number(key & 7n)
    p = afterKey
    const field: Partial<WireField> = { no, type }
    if (type === 0) [field.value, p] = readVarint(b, p)
    else if (type === 1) p += 8
    else if (type === 5) p += 4
    else if (type === 2) {
      const [len, q] = readVarint(b, p)
      p = q + Number(len)
      field.bytes = b.subarray(q, p)
    } else throw new Error(`unsupported wire type ${type}`)
    if (p > b.length) throw new Error(`field ${no} overruns the message`)
    out.push({ ...field, raw: b.subarray(start, p) } as WireField)
  }
  return out
}

const text = new TextDecoder()
/** The string payload of the first field `no`, or ''. */
export const fieldString = (fields: WireField[], no: number) =>
  text.decode(fields.find((f) => f.no === no)?.bytes ?? new Uint8Array())

function varint(v: bigint | number): number[] {
  let x = BigInt.asUintN(64, BigInt(v))
  const out: number[] = []
  do {
    const low = Number(x & 0x7fn)
    x >>= 7n
    out.push(x > 0n ? low | 0x80 : low)
  } while (x > 0n)
  return out
}

/** Field writers: each returns the encoded field, tag included. */
export const pb = {
  int: (no: number, v: bigint | number) => Uint8Array.from([...varint(no << 3), ...varint(v)]),
  bytes: (no: number, payload: Uint8Array) =>
    concat([Uint8Array.from([...varint((no << 3) | 2), ...varint(payload.length)]), payload]),
  str: (no: number, s: string) => pb.bytes(no, new TextEncoder().encode(s)),
  msg: (no: number, ...fields: Uint8Array[]) => pb.bytes(no, concat(fields)),
}

// ONNX field numbers (onnx.proto), only those the writers below use.
export const ELEM = { float: 1, int64: 7, bool: 9 } as const

/** NodeProto: inputs, outputs, name, op_type, attributes (already encoded AttributeProto payloads). */
export function node(
  op: string,
  name: string,
  inputs: string[],
  outputs: string[],
  attrs: Uint8Array[] = [],
) {
  return concat([
    ...inputs.map((i) => pb.str(1, i)),
    ...outputs.map((o) => pb.str(2, o)),
    pb.str(3, name),
    pb.str(4, op),
    ...attrs.map((a) => pb.bytes(5, a)),
  ])
}

/** AttributeProto of type INT (2), INTS (7) or GRAPH (5). */
export const attrInt = (name: string, v: number) => concat([pb.str(1, name), pb.int(3, v), pb.int(20, 2)])
export const attrInts = (name: string, vs: number[]) =>
  concat([pb.str(1, name), ...vs.map((v) => pb.int(8, v)), pb.int(20, 7)])
export const attrGraph = (name: string, graph: Uint8Array) =>
  concat([pb.str(1, name), pb.bytes(6, graph), pb.int(20, 5)])

/** ValueInfoProto with a tensor type; a string dim is symbolic, a number fixed. */
export function valueInfo(name: string, elem: number, dims?: (number | string)[]) {
  const dim = (d: number | string) => pb.msg(1, typeof d === 'number' ? pb.int(1, d) : pb.str(2, d))
  const shape = dims ? [pb.msg(2, ...dims.map(dim))] : []
  return concat([pb.str(1, name), pb.msg(2, pb.msg(1, pb.int(1, elem), ...shape))])
}

/** TensorProto initializer with int64 or bool data in raw little-endian bytes. */
export function initializer(name: string, elem: number, dims: number[], values: bigint[] | boolean[]) {
  const raw =
    elem === ELEM.int64
      ? new Uint8Array(BigInt64Array.from(values as bigint[]).buffer)
      : Uint8Array.from((values as boolean[]).map((v) => (v ? 1 : 0)))
  return concat([...dims.map((d) => pb.int(1, d)), pb.int(2, elem), pb.str(8, name), pb.bytes(9, raw)])
}
