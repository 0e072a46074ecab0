/**
 * The little protobuf that graph surgery needs: walk a message's fields as byte ranges, and write
 * new fields. Nothing is decoded that is not asked for, so unknown fields and initializers (the
 * weights) are copied verbatim.
 */
import { concat } from '../shared/bytes.ts'
import { NotOnnxError } from '../shared/errors.ts'

export const VARINT = 0
export const I64 = 1
export const LEN = 2
export const I32 = 5

/** One field of a message: `start`–`end` is the whole field, tag included. */
export interface Field {
  field: number
  wire: number
  start: number
  end: number
  /** LEN: where the payload starts (it ends at `end`); VARINT: unused. */
  from: number
  /** VARINT: the value (exact up to 2^53); LEN: the payload length. */
  value: number
}

const bad = (what: string, at: number): never => {
  throw new NotOnnxError(`malformed protobuf: ${what} at byte ${at}`)
}

/** A varint at `pos` as [value, next]; past 2^53 the value is rounded, which no field here needs. */
export function readVarint(b: Uint8Array, pos: number, end = b.byteLength): [number, number] {
  let value = 0
  for (let i = 0; i < 10 && pos + i < end; i++) {
    const byte = b[pos + i]!
    value += (byte & 0x7f) * 2 ** (7 * i)
    if (byte < 0x80) return [value, pos + i + 1]
  }
  return bad('truncated varint', pos)
}

/** The fields of the message held in `b[from, to)`, in file order. */
/** The fields of a message one at a time: a hostile model's millions of tiny fields are never held at once. */
export function* fields(b: Uint8Array, from = 0, to = b.byteLength): Generator<Field> {
  let pos = from
  while (pos < to) {
    const start = pos
    const [key, next] = readVarint(b, pos, to)
    const field = Math.floor(key / 8)
    const wire = key % 8
    if (field === 0) bad('field number 0', start)
    pos = next
    let value = 0
    let payload = pos
    if (wire === VARINT) [value, pos] = readVarint(b, pos, to)
    else if (wire === LEN) {
      ;[value, payload] = readVarint(b, pos, to)
      pos = payload + value
    } else if (wire === I64) pos += 8
    else if (wire === I32) pos += 4
    else bad(`wire type ${wire}`, start)
    if (pos > to) bad(`field ${field} overruns its message`, start)
    yield { field, wire, start, end: pos, from: payload, value }
  }
}

const decoder = new TextDecoder()
const encoder = new TextEncoder()

/** A LEN field's payload as UTF-8 text. */
export const text = (b: Uint8Array, f: Field): string => decoder.decode(b.subarray(f.from, f.end))

/** The first `field` of a message with a LEN payload, or undefined. */
export function first(b: Uint8Array, msg: { from: number; to: number }, field: number): Field | undefined {
  for (const f of fields(b, msg.from, msg.to)) if (f.field === field && f.wire === LEN) return f
  return undefined
}

export function varint(n: number): Uint8Array {
  const out: number[] = []
  let v = n
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80)
    v = Math.floor(v / 0x80)
  }
  out.push(v)
  return Uint8Array.from(out)
}

export const varintField = (field: number, n: number): Uint8Array =>
  concat([varint(field * 8 + VARINT), varint(n)])

export const lenField = (field: number, body: Uint8Array): Uint8Array =>
  concat([varint(field * 8 + LEN), varint(body.byteLength), body])

export const stringField = (field: number, s: string): Uint8Array => lenField(field, encoder.encode(s))
