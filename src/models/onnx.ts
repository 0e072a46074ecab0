/**
 * A cheap check that bytes are an ONNX ModelProto: walks the top-level protobuf fields (no decoding of
 * their contents) and requires `ir_version` (field 1, varint) and `graph` (field 7, bytes).
 */
import { NotOnnxError } from '../shared/errors.ts'

const VARINT = 0
const I64 = 1
const LEN = 2
const I32 = 5
/** ModelProto fields whose wire type we know (onnx.proto): anything else only needs a valid wire type. */
const WIRE_OF: Record<number, number> = {
  1: VARINT,
  2: LEN,
  3: LEN,
  4: LEN,
  5: VARINT,
  6: LEN,
  7: LEN,
  8: LEN,
}
/** ONNX IR versions so far are 1–11; leave headroom but reject nonsense. */
const MAX_IR_VERSION = 64

/** Reads a varint at `pos`; returns [value, next] or null if truncated or longer than 10 bytes. */
function varint(b: Uint8Array, pos: number): [number, number] | null {
  let value = 0
  for (let i = 0; i < 10 && pos + i < b.byteLength; i++) {
    const byte = b[pos + i]!
    value += (byte & 0x7f) * 2 ** (7 * i)
    if (byte < 0x80) return [value, pos + i + 1]
  }
  return null
}

/** Why `bytes` are not an ONNX model, or null if they look like one. */
export function onnxProblem(bytes: Uint8Array): string | null {
  if (bytes.byteLength === 0) return 'the file is empty'
  let pos = 0
  let irVersion = 0
  let graph = false
  while (pos < bytes.byteLength) {
    const tag = varint(bytes, pos)
    if (tag == null) return `truncated field tag at byte ${pos}`
    const [key, next] = tag
    const field = Math.floor(key / 8)
    const wire = key % 8
    if (field === 0) return `field number 0 at byte ${pos}`
    const expected = WIRE_OF[field]
    if (expected !== undefined && expected !== wire) return `field ${field} has wire type ${wire}`
    pos = next
    if (wire === VARINT) {
      const v = varint(bytes, pos)
      if (v == null) return `truncated varint at byte ${pos}`
      if (field === 1) irVersion = v[0]
      pos = v[1]
    } else if (wire === LEN) {
      const len = varint(bytes, pos)
      if (len == null || len[1] + len[0] > bytes.byteLength) return `field ${field} overruns the file`
      if (field === 7) graph = true
      pos = len[1] + len[0]
    } else if (wire === I64 || wire === I32) {
      pos += wire === I64 ? 8 : 4
      if (pos > bytes.byteLength) return `field ${field} overruns the file`
    } else return `invalid wire type ${wire} at byte ${pos}`
  }
  if (irVersion < 1 || irVersion > MAX_IR_VERSION) return 'no valid ir_version (field 1)'
  if (!graph) return 'no graph (field 7)'
  return null
}

/** Throws NotOnnxError naming the problem unless `bytes` parse as an ONNX ModelProto. */
export function assertOnnx(bytes: Uint8Array, what = 'the file'): void {
  const problem = onnxProblem(bytes)
  if (problem) throw new NotOnnxError(`${what} is not an ONNX model: ${problem}`)
}
