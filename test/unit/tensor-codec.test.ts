import * as dagCbor from '@ipld/dag-cbor'
import { describe, expect, it } from 'vitest'
import type { NamedTensors, Tensor } from '../../src/shared/tensor.ts'
import {
  decodeTensor,
  decodeTensors,
  encodeTensor,
  encodeTensors,
  tensorsCid,
  tensorsEqualWithin,
} from '../../src/shared/tensor-codec.ts'

const samples: Tensor[] = [
  { dtype: 'float32', dims: [2, 3], data: Float32Array.from([1.5, -2, 0, Number.NaN, 1e-30, 3.25]) },
  { dtype: 'int32', dims: [3], data: Int32Array.from([-1, 0, 2 ** 31 - 1]) },
  { dtype: 'int64', dims: [2, 1], data: BigInt64Array.from([-(2n ** 63n), 2n ** 62n + 7n]) },
  { dtype: 'uint8', dims: [4], data: Uint8Array.from([0, 1, 128, 255]) },
  { dtype: 'int8', dims: [2, 2], data: Int8Array.from([-128, -1, 0, 127]) },
  { dtype: 'bool', dims: [3], data: Uint8Array.from([1, 0, 1]) },
  { dtype: 'float32', dims: [0, 5], data: new Float32Array(0) },
  { dtype: 'float32', dims: [], data: Float32Array.from([42]) },
]

const thrown = (fn: () => unknown): Error => {
  try {
    fn()
  } catch (err) {
    return err as Error
  }
  throw new Error('expected a throw')
}

describe('tensor codec', () => {
  it.each(samples.map((t) => [`${t.dtype} [${t.dims}]`, t] as const))(
    'round trips %s through dag-cbor',
    (_, t) => {
      const back = decodeTensor(dagCbor.decode(dagCbor.encode(encodeTensor(t))))
      expect(back.dtype).toBe(t.dtype)
      expect(back.dims).toEqual(t.dims)
      expect(back.data.constructor).toBe(t.data.constructor)
      expect(new Uint8Array(back.data.buffer, back.data.byteOffset, back.data.byteLength)).toEqual(
        new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength),
      )
    },
  )

  it('encodes little-endian bytes without copying', () => {
    const t: Tensor = { dtype: 'int32', dims: [1], data: Int32Array.from([0x01020304]) }
    const enc = encodeTensor(t)
    expect([...enc.data]).toEqual([4, 3, 2, 1])
    expect(enc.data.buffer).toBe(t.data.buffer)
  })

  it('encodes a typed-array view at an offset into a larger buffer', () => {
    const big = Float32Array.from([9, 1, 2, 9])
    const t: Tensor = { dtype: 'float32', dims: [2], data: big.subarray(1, 3) }
    const back = decodeTensor(dagCbor.decode(dagCbor.encode(encodeTensor(t))))
    expect([...back.data]).toEqual([1, 2])
  })

  it('copies unaligned data into an aligned typed array', () => {
    const src = BigInt64Array.from([5n, -6n])
    const buf = new Uint8Array(17)
    buf.set(new Uint8Array(src.buffer), 1)
    const back = decodeTensor({ dtype: 'int64', dims: [2], data: buf.subarray(1) })
    expect(back.data).toBeInstanceOf(BigInt64Array)
    expect(back.data.byteOffset % 8).toBe(0)
    expect([...(back.data as BigInt64Array)]).toEqual([5n, -6n])

    const f = new Uint8Array(9)
    f.set(new Uint8Array(Float32Array.from([1, 2]).buffer), 1)
    expect([...decodeTensor({ dtype: 'float32', dims: [2], data: f.subarray(1) }).data]).toEqual([1, 2])
  })

  it('rejects bad dtype, dims, length and element counts', () => {
    const ok = { dtype: 'float32', dims: [2], data: new Uint8Array(8) }
    const cases: [unknown, RegExp][] = [
      [{ ...ok, dtype: 'float64' }, /dtype/],
      [{ ...ok, dims: [-2] }, /non-negative/],
      [{ ...ok, dims: [1.5] }, /non-negative/],
      [{ ...ok, dims: '2' }, /array/],
      [{ ...ok, dims: [1, 1, 1, 1, 1, 1, 1, 1, 2] }, /rank/],
      [{ ...ok, data: new Uint8Array(7) }, /bytes/],
      [{ ...ok, data: [0, 0] }, /bytes/],
      [{ ...ok, extra: 1 }, /exactly/],
      [{ dtype: 'bool', dims: [1], data: Uint8Array.of(2) }, /bool/],
      [{ ...ok, dims: [2 ** 20, 2 ** 20, 2 ** 20] }, /limit/],
      [null, /map/],
    ]
    for (const [obj, msg] of cases) {
      const err = thrown(() => decodeTensor(obj))
      expect(err.name).toBe('InvalidTensorError')
      expect(err.message).toMatch(msg)
    }
    const tooMany = thrown(() =>
      decodeTensor({ ...ok, dims: [5], data: new Uint8Array(20) }, { maxElements: 4 }),
    )
    expect(tooMany.message).toMatch(/limit 4/)
  })

  it('rejects a tensor whose data does not match its dtype or dims on encode', () => {
    expect(thrown(() => encodeTensor({ dtype: 'int32', dims: [1], data: new Float32Array(1) })).name).toBe(
      'InvalidTensorError',
    )
    expect(thrown(() => encodeTensor({ dtype: 'int32', dims: [3], data: new Int32Array(2) })).name).toBe(
      'InvalidTensorError',
    )
  })

  it('validates names and tensor counts in named maps', () => {
    const t = encodeTensor(samples[0]!)
    expect(thrown(() => decodeTensors({ '': t })).name).toBe('InvalidTensorError')
    expect(thrown(() => decodeTensors({ ['x'.repeat(129)]: t })).name).toBe('InvalidTensorError')
    const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`t${i}`, t]))
    expect(thrown(() => decodeTensors(many)).message).toMatch(/exceed 64/)
    expect(thrown(() => decodeTensors({ a: { ...t, dtype: 'x' } })).message).toMatch(/tensor 'a'/)
    const named: NamedTensors = { b: samples[1]!, a: samples[2]! }
    expect(Object.keys(decodeTensors(dagCbor.decode(dagCbor.encode(encodeTensors(named)))))).toEqual([
      'a',
      'b',
    ])
  })

  it('gives equal CIDs for equal tensors and different CIDs for one flipped bit', async () => {
    const a: NamedTensors = { x: samples[0]!, y: samples[2]! }
    const copy = (t: Tensor): Tensor => ({ ...t, dims: [...t.dims], data: t.data.slice() as Tensor['data'] })
    const b: NamedTensors = { y: copy(samples[2]!), x: copy(samples[0]!) }
    const cid = await tensorsCid(a)
    expect(cid.code).toBe(0x71)
    expect(cid.version).toBe(1)
    expect((await tensorsCid(b)).equals(cid)).toBe(true)
    const bytes = new Uint8Array(b.x!.data.buffer)
    bytes[5]! ^= 0x10
    expect((await tensorsCid(b)).equals(cid)).toBe(false)
  })

  it('compares within tolerance', () => {
    const a: NamedTensors = {
      x: { dtype: 'float32', dims: [3], data: Float32Array.from([1, 2, Number.NaN]) },
    }
    const b: NamedTensors = {
      x: { dtype: 'float32', dims: [3], data: Float32Array.from([1, 2.001, Number.NaN]) },
    }
    const loose = tensorsEqualWithin(a, b, 1e-2, 0)
    expect(loose.equal).toBe(true)
    expect(loose.maxAbsDiff).toBeCloseTo(0.001, 5)
    expect(tensorsEqualWithin(a, b, 1e-4, 0).equal).toBe(false)
    expect(tensorsEqualWithin(a, { y: b.x! }).maxAbsDiff).toBe(Number.POSITIVE_INFINITY)
  })
})
