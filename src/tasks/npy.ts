/**
 * NumPy `.npy` files (format versions 1.0, 2.0 and 3.0), C order, for the dtypes tensors carry:
 *   const t = readNpy(bytes)   // { dtype, dims, data }
 *   const bytes = writeNpy(t)  // version 1.0, little-endian
 */
import { InvalidTensorError } from '../shared/errors.ts'
import type { DType, Tensor, TensorData } from '../shared/tensor.ts'
import { BYTES_PER_ELEMENT, elementCount } from '../shared/tensor.ts'
import { DEFAULT_MAX_ELEMENTS } from '../shared/tensor-codec.ts'

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59] // \x93NUMPY
const KIND: Record<string, DType> = {
  f4: 'float32',
  i4: 'int32',
  i8: 'int64',
  u1: 'uint8',
  i1: 'int8',
  b1: 'bool',
}
const DESCR: Record<DType, string> = {
  float32: '<f4',
  int32: '<i4',
  int64: '<i8',
  uint8: '|u1',
  int8: '|i1',
  bool: '|b1',
}
const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

const bad = (msg: string): never => {
  throw new InvalidTensorError(`.npy: ${msg}`)
}

function view(bytes: Uint8Array, dtype: DType, n: number): TensorData {
  const copy = new Uint8Array(bytes) // aligned, owned buffer
  const b = copy.buffer
  switch (dtype) {
    case 'float32':
      return new Float32Array(b, 0, n)
    case 'int32':
      return new Int32Array(b, 0, n)
    case 'int64':
      return new BigInt64Array(b, 0, n)
    case 'int8':
      return new Int8Array(b, 0, n)
    default:
      return copy
  }
}

/** Reverses every `width`-byte group (byte order swap). */
function swap(bytes: Uint8Array, width: number): Uint8Array {
  if (width === 1) return bytes
  const out = new Uint8Array(bytes.length)
  for (let i = 0; i < bytes.length; i += width)
    for (let j = 0; j < width; j++) out[i + j] = bytes[i + width - 1 - j]!
  return out
}

function parseHeader(header: string): { dtype: DType; bigEndian: boolean; dims: number[] } {
  const h = header.trim()
  if (!h.startsWith('{') || !h.endsWith('}')) bad(`header is not a dict: ${h.slice(0, 80)}`)
  const descr = /'descr'\s*:\s*'([<>|=]?)([a-z]\d+)'/.exec(h)
  if (!descr) return bad(`no supported 'descr' in header ${h.slice(0, 80)}`)
  const dtype = KIND[descr[2]!]
  if (!dtype)
    bad(`dtype ${descr[1]}${descr[2]} is not supported (use float32, int32, int64, uint8, int8 or bool)`)
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(h)
  if (!fortran) bad("header has no 'fortran_order'")
  if (fortran![1] === 'True') bad('Fortran-order arrays are not supported; save with np.ascontiguousarray')
  const shape = /'shape'\s*:\s*\(([^)]*)\)/.exec(h)
  if (!shape) return bad("header has no 'shape'")
  const parts = shape[1]!.split(',').map((s) => s.trim())
  if (parts.at(-1) === '') parts.pop()
  if (!parts.every((p) => /^\d+$/.test(p))) bad(`bad shape (${shape[1]})`)
  return { dtype: dtype!, bigEndian: descr[1] === '>', dims: parts.map(Number) }
}

export function readNpy(bytes: Uint8Array, maxElements = DEFAULT_MAX_ELEMENTS): Tensor {
  if (bytes.length < 10 || MAGIC.some((m, i) => bytes[i] !== m)) bad('not a .npy file (bad magic)')
  const major = bytes[6]!
  if (major < 1 || major > 3) bad(`unsupported format version ${major}.${bytes[7]}`)
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const lenBytes = major === 1 ? 2 : 4
  if (bytes.length < 8 + lenBytes) bad('truncated header')
  const headerLen = major === 1 ? dv.getUint16(8, true) : dv.getUint32(8, true)
  const start = 8 + lenBytes
  if (start + headerLen > bytes.length) bad('truncated header')
  const decoder = new TextDecoder(major === 3 ? 'utf-8' : 'latin1')
  const { dtype, bigEndian, dims } = parseHeader(decoder.decode(bytes.subarray(start, start + headerLen)))
  if (dims.some((d) => d > maxElements) || elementCount(dims) > maxElements)
    bad(`shape (${dims}) exceeds ${maxElements} elements`)
  const n = elementCount(dims)
  const width = BYTES_PER_ELEMENT[dtype]
  const body = bytes.subarray(start + headerLen)
  if (body.length !== n * width) bad(`data is ${body.length} bytes, shape (${dims}) needs ${n * width}`)
  const native = bigEndian === !HOST_LE ? body : swap(body, width)
  if (dtype === 'bool' && native.some((b) => b > 1)) bad('bool data must be 0 or 1')
  return { dtype, dims, data: view(native, dtype, n) }
}

export function writeNpy(t: Tensor): Uint8Array<ArrayBuffer> {
  const n = elementCount(t.dims)
  if (t.data.length !== n) throw new InvalidTensorError(`${t.data.length} values for dims [${t.dims}]`)
  const shape = t.dims.length === 1 ? `(${t.dims[0]},)` : `(${t.dims.join(', ')})`
  let header = `{'descr': '${DESCR[t.dtype]}', 'fortran_order': False, 'shape': ${shape}, }`
  const version = header.length + 11 > 0xffff ? 2 : 1
  const pre = version === 1 ? 10 : 12
  header += `${' '.repeat(63 - ((pre + header.length) % 64))}\n` // preamble + header: multiple of 64
  const width = BYTES_PER_ELEMENT[t.dtype]
  const raw = new Uint8Array(t.data.buffer, t.data.byteOffset, n * width)
  const data = HOST_LE ? raw : swap(raw, width)
  const out = new Uint8Array(pre + header.length + data.length)
  out.set(MAGIC)
  out[6] = version
  const dv = new DataView(out.buffer)
  if (version === 1) dv.setUint16(8, header.length, true)
  else dv.setUint32(8, header.length, true)
  for (let i = 0; i < header.length; i++) out[pre + i] = header.charCodeAt(i)
  out.set(data, pre + header.length)
  return out
}
