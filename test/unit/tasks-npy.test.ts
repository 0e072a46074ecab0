/** .npy reading and writing against files written by NumPy 2.4 (embedded), and bad input. */
import { describe, expect, it } from 'vitest'
import type { Tensor } from '../../src/shared/tensor.ts'
import { readNpy, writeNpy } from '../../src/tasks/npy.ts'
import { inputsToJson, parseJsonInputs, randomInputsJson, tensorsToJson } from '../../src/tasks/raw.ts'

// np.save(...) output, base64.
const NUMPY = {
  f4: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDIsIDMpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAAACAPgAAAD8AAEA/AACAPwAAoD8=',
  i8: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPGk4JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDQsKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAr9/////////wAAAAAAAAAAAAAAAAABAAAHAAAAAAAAAA==',
  b1: 'k05VTVBZAQB2AHsnZGVzY3InOiAnfGIxJywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDIsIDIpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoBAAAB',
  v2: 'k05VTVBZAgB0AAAAeydkZXNjcic6ICc8aTQnLCAnZm9ydHJhbl9vcmRlcic6IEZhbHNlLCAnc2hhcGUnOiAoMywpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAAQAAAAIAAAA=',
  be: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPmY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDIsKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAo/wAAAwAAAAA==',
  scalar:
    'k05VTVBZAQB2AHsnZGVzY3InOiAnfHUxJywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKCksIH0gICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoD',
  f8: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPGY4JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDIsKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAAAAAAAAAAAAAAAAA',
  fortran:
    'k05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBUcnVlLCAnc2hhcGUnOiAoMiwgMiksIH0gICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAAAAAAAAAAAAAAAAA',
}
const bytes = (k: keyof typeof NUMPY) => new Uint8Array(Buffer.from(NUMPY[k], 'base64'))
const values = (t: Tensor) => Array.from(t.data as ArrayLike<number | bigint>)

describe('.npy', () => {
  it('reads NumPy files: float32, int64, bool, version 2.0, big-endian, 0-d', () => {
    expect(readNpy(bytes('f4'))).toMatchObject({ dtype: 'float32', dims: [2, 3] })
    expect(values(readNpy(bytes('f4')))).toEqual([0, 0.25, 0.5, 0.75, 1, 1.25])
    expect(values(readNpy(bytes('i8')))).toEqual([-3n, 0n, 2n ** 40n, 7n])
    expect(readNpy(bytes('b1'))).toMatchObject({ dtype: 'bool', dims: [2, 2] })
    expect(values(readNpy(bytes('b1')))).toEqual([1, 0, 0, 1])
    expect(values(readNpy(bytes('v2')))).toEqual([0, 1, 2])
    expect(values(readNpy(bytes('be')))).toEqual([1.5, -2])
    expect(readNpy(bytes('scalar'))).toMatchObject({ dtype: 'uint8', dims: [] })
  })

  it('writes what NumPy writes, and round-trips every dtype', () => {
    for (const k of ['f4', 'i8', 'b1', 'scalar'] as const)
      expect(writeNpy(readNpy(bytes(k)))).toEqual(bytes(k))
    const tensors: Tensor[] = [
      { dtype: 'float32', dims: [2, 2], data: Float32Array.of(1, -2.5, Math.PI, 0) },
      { dtype: 'int32', dims: [3], data: Int32Array.of(-1, 0, 2 ** 31 - 1) },
      { dtype: 'int64', dims: [1, 2], data: BigInt64Array.of(-(2n ** 62n), 5n) },
      { dtype: 'uint8', dims: [2, 1], data: Uint8Array.of(0, 255) },
      { dtype: 'int8', dims: [2], data: Int8Array.of(-128, 127) },
      { dtype: 'bool', dims: [3], data: Uint8Array.of(1, 0, 1) },
      { dtype: 'float32', dims: [0, 4], data: new Float32Array(0) },
    ]
    for (const t of tensors) {
      const file = writeNpy(t)
      expect(file.length % 64).toBe(t.data.byteLength % 64) // preamble aligned to 64 bytes
      const back = readNpy(file)
      expect(back.dtype).toBe(t.dtype)
      expect(back.dims).toEqual(t.dims)
      expect(values(back)).toEqual(values(t))
    }
  })

  it('rejects bad files with InvalidTensorError naming the problem', () => {
    const cases: [Uint8Array, RegExp][] = [
      [new TextEncoder().encode('not numpy at all'), /bad magic/],
      [Uint8Array.of(0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 9, 0, 0, 0), /version 9/],
      [bytes('f4').subarray(0, 40), /truncated header/],
      [bytes('f4').subarray(0, 140), /data is 12 bytes.*needs 24/],
      [bytes('f8'), /<f8 is not supported/],
      [bytes('fortran'), /Fortran-order/],
    ]
    for (const [file, message] of cases) {
      expect(() => readNpy(file)).toThrow(message)
      try {
        readNpy(file)
      } catch (err) {
        expect((err as Error).name).toBe('InvalidTensorError')
      }
    }
    const badBool = bytes('b1')
    badBool[badBool.length - 1] = 7
    expect(() => readNpy(badBool)).toThrow(/bool data/)
    const header = new TextDecoder('latin1').decode(bytes('f4')).replace("'shape': (2, 3)", "'shape': (2, x)")
    expect(() => readNpy(Uint8Array.from(header, (c) => c.charCodeAt(0)))).toThrow(/bad shape/)
    expect(() => readNpy(bytes('f4'), 5)).toThrow(/exceeds 5 elements/)
  })
})

describe('raw tensor JSON', () => {
  const specs = [
    { name: 'frames', dtype: 'float32' as const, dims: [-1, 3] },
    { name: 'sr', dtype: 'int64' as const, dims: [] },
  ]

  it('reads nested arrays and { dims, data } with dynamic dims, int64 included', () => {
    const t = parseJsonInputs('{"frames": [[1,2,3],[4,5,6]], "sr": {"dims": [], "data": [16000]}}', specs)
    expect(t.frames).toMatchObject({ dims: [2, 3] })
    expect(values(t.sr!)).toEqual([16000n])
    const fixed = parseJsonInputs('[1,2,3,4]', [{ name: 'x', dtype: 'float32', dims: [2, 2] }])
    expect(fixed.x!.dims).toEqual([2, 2])
  })

  it('rejects shapes that break a fixed dim, non-integers for int dtypes, missing inputs', () => {
    expect(() => parseJsonInputs('{"frames": [[1,2]], "sr": [1]}', specs)).toThrow(/expects \[-1,3\]/)
    expect(() => parseJsonInputs('{"frames": [[1,2,3]], "sr": {"dims": [], "data": [1.5]}}', specs)).toThrow(
      /integers/,
    )
    expect(() => parseJsonInputs('{"frames": [[1,2,3]]}', specs)).toThrow(/"sr" is missing/)
    expect(() => parseJsonInputs('{oops', specs)).toThrow(/not valid JSON/)
  })

  it('random inputs and output JSON read back', () => {
    const named = parseJsonInputs(randomInputsJson(specs), specs)
    expect(named.frames!.dims).toEqual([1, 3])
    expect(parseJsonInputs(inputsToJson(named), specs).sr!.dims).toEqual([])
    expect(JSON.parse(tensorsToJson(named))).toMatchObject({ sr: { dtype: 'int64', dims: [] } })
    const f = Float32Array.of(0.1, 1 / 3, -1e-20, 3.4e38)
    const back = JSON.parse(tensorsToJson({ f: { dtype: 'float32', dims: [4], data: f } })).f.data
    expect(Float32Array.from(back)).toEqual(f) // 9 significant digits round-trip float32
  })
})
