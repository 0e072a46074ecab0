/**
 * The Node engine (node/engine.ts) on onnxruntime-node: generated models against the JS reference,
 * every tensor dtype through an Identity graph, named errors, aborts, eviction and release.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import * as ort from 'onnxruntime-node'
import protobuf from 'protobufjs'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { createNodeEngine } from '../../node/engine.ts'
import type { InferenceEngine } from '../../src/compute/bridge.ts'
import { modelCid } from '../../src/shared/cid.ts'
import { type MlpSpec, mlpForward, mlpInput, mlpWeights } from '../../src/shared/mlp.ts'
import { ARRAY_TYPES, DTYPES, type DType, type NamedTensors } from '../../src/shared/tensor.ts'

interface Entry {
  name: string
  cid: string
  file: string
  mlp?: MlpSpec
}
const publicDir = resolve(import.meta.dirname, '../../public')
const catalog = JSON.parse(readFileSync(resolve(publicDir, 'models/catalog.json'), 'utf8')) as Entry[]
const model = (name: string) => {
  const e = catalog.find((m) => m.name === name)!
  return { ...e, spec: e.mlp!, bytes: new Uint8Array(readFileSync(resolve(publicDir, e.file))) }
}
const tiny = model('mlp-tiny')
const alt = model('mlp-tiny-alt')
const small = model('mlp-s')
/** The class behind ort.InferenceSession (typed as a factory): what the spies below wrap. */
const proto = (ort.InferenceSession as unknown as { prototype: ort.InferenceSession }).prototype
const ortRun = proto.run as (...args: unknown[]) => Promise<unknown>

const inputOf = (spec: MlpSpec): NamedTensors => ({
  x: { dtype: 'float32', dims: [spec.batch, spec.layers[0]!], data: mlpInput(spec) },
})
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0)
const refOf = (spec: MlpSpec) => mlpForward(spec, mlpWeights(spec), mlpInput(spec))

/** Identity on one input per dtype (`in_<dtype>` → `out_<dtype>`, dims [2, 3]): the tensor conversions. */
const ELEM_TYPE: Record<DType, number> = { float32: 1, uint8: 2, int8: 3, int32: 6, int64: 7, bool: 9 }
function identityModel(): Uint8Array {
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
      Dim: { fields: { dimValue: { type: 'int64', id: 1 } } },
    },
  })
  const value = (name: string, d: DType) => ({
    name,
    type: { tensorType: { elemType: ELEM_TYPE[d], shape: { dim: [{ dimValue: 2 }, { dimValue: 3 }] } } },
  })
  const Model = root.lookupType('Model')
  const graph = {
    name: 'identity',
    node: DTYPES.map((d) => ({ opType: 'Identity', input: [`in_${d}`], output: [`out_${d}`] })),
    input: DTYPES.map((d) => value(`in_${d}`, d)),
    output: DTYPES.map((d) => value(`out_${d}`, d)),
  }
  return Model.encode(Model.fromObject({ irVersion: 8, opsetImport: [{ version: 17 }], graph })).finish()
}

describe('node engine', () => {
  let engine: InferenceEngine
  afterEach(() => {
    engine?.close()
    vi.restoreAllMocks()
  })

  it('reports the CPU EP, its threads and the ORT version', async () => {
    engine = createNodeEngine({ threads: 2 })
    const caps = await engine.capabilities()
    expect(caps).toMatchObject({ eps: ['cpu'], adapter: null, threads: 2, crossOriginIsolated: false })
    expect(caps.ortVersion).toBe(`${ort.env.versions.common}+cpu`)
  })

  it('runs a model loaded by its CID and matches the JS reference within 1e-5', async () => {
    engine = createNodeEngine({ threads: 1 })
    await engine.loadModel(tiny.cid, tiny.bytes)
    const first = await engine.run({ cid: tiny.cid, inputs: inputOf(tiny.spec) })
    expect(first.ep).toBe('cpu')
    expect(first.outputs.y!.dims).toEqual([1, 8])
    expect(first.outputs.y!.dtype).toBe('float32')
    expect(maxDiff(first.outputs.y!.data as Float32Array, refOf(tiny.spec))).toBeLessThan(1e-5)
    expect(first.timing.sessionMs).toBeGreaterThan(0)
    expect(first.timing.runMs).toBeGreaterThanOrEqual(0)
    // A bench-size model too: batch 64, 256→512→256.
    await engine.loadModel(small.cid, small.bytes)
    const out = (await engine.run({ cid: small.cid, inputs: inputOf(small.spec) })).outputs.y!
    expect(out.dims).toEqual([64, 256])
    expect(maxDiff(out.data as Float32Array, refOf(small.spec))).toBeLessThan(1e-5)
  })

  it('passes every tensor dtype through unchanged', async () => {
    engine = createNodeEngine({ threads: 1 })
    const bytes = identityModel()
    const cid = (await modelCid(bytes)).toString()
    await engine.loadModel(cid, bytes)
    const inputs: NamedTensors = {}
    for (const d of DTYPES) {
      const data = new ARRAY_TYPES[d](6)
      for (let i = 0; i < 6; i++)
        data[i] = (d === 'int64' ? BigInt(i - 2) : d === 'bool' ? i % 2 : i - 2) as never
      inputs[`in_${d}`] = { dtype: d, dims: [2, 3], data }
    }
    const { outputs } = await engine.run({ cid, inputs })
    for (const d of DTYPES) {
      const out = outputs[`out_${d}`]!
      expect(out.dtype, d).toBe(d)
      expect(out.dims, d).toEqual([2, 3])
      expect(out.data, d).toBeInstanceOf(ARRAY_TYPES[d])
      expect(Array.from(out.data as ArrayLike<unknown>), d).toEqual(
        Array.from(inputs[`in_${d}`]!.data as ArrayLike<unknown>),
      )
    }
  })

  it('refuses bytes that do not hash to the CID, and keeps nothing', async () => {
    engine = createNodeEngine({ threads: 1 })
    await expect(engine.loadModel(tiny.cid, alt.bytes)).rejects.toMatchObject({ name: 'ModelIntegrityError' })
    await expect(engine.run({ cid: tiny.cid, inputs: inputOf(tiny.spec) })).rejects.toMatchObject({
      name: 'UnknownModelError',
    })
  })

  it('fails the run of bytes that are not ONNX with InferenceError, and caches no session', async () => {
    engine = createNodeEngine({ threads: 1 })
    const bytes = new TextEncoder().encode('not a model')
    const cid = (await modelCid(bytes)).toString()
    await engine.loadModel(cid, bytes)
    const inputs = inputOf(tiny.spec)
    await expect(engine.run({ cid, inputs })).rejects.toMatchObject({ name: 'InferenceError' })
    const create = vi.spyOn(ort.InferenceSession, 'create')
    await expect(engine.run({ cid, inputs })).rejects.toMatchObject({ name: 'InferenceError' })
    expect(create).toHaveBeenCalledTimes(1) // tried again, not a cached failure
  })

  it('answers UnknownModelError for a model never loaded, and after evict', async () => {
    engine = createNodeEngine({ threads: 1 })
    await expect(engine.run({ cid: alt.cid, inputs: inputOf(alt.spec) })).rejects.toMatchObject({
      name: 'UnknownModelError',
    })
    await engine.loadModel(tiny.cid, tiny.bytes)
    await engine.run({ cid: tiny.cid, inputs: inputOf(tiny.spec) })
    const release = vi.spyOn(proto, 'release')
    expect(await engine.evict(tiny.cid)).toBe(true)
    expect(await engine.evict(tiny.cid)).toBe(false)
    await vi.waitFor(() => expect(release).toHaveBeenCalledTimes(1))
    await expect(engine.run({ cid: tiny.cid, inputs: inputOf(tiny.spec) })).rejects.toMatchObject({
      name: 'UnknownModelError',
    })
  })

  it('refuses bad inputs with InvalidTensorError, and runs the next good one', async () => {
    engine = createNodeEngine({ threads: 1 })
    await engine.loadModel(tiny.cid, tiny.bytes)
    const x = mlpInput(tiny.spec)
    const bad: NamedTensors[] = [
      { x: { dtype: 'float32', dims: [2, 8], data: x } }, // wrong shape, right count
      { x: { dtype: 'float32', dims: [1, 15], data: x } }, // count does not match dims
      { x: { dtype: 'int32', dims: [1, 16], data: new Int32Array(16) } }, // wrong dtype
      { x: { dtype: 'float32', dims: [1, 16], data: new Int32Array(16) } }, // data not of its dtype
      {}, // missing
      { x: { dtype: 'float32', dims: [1, 16], data: x }, z: { dtype: 'float32', dims: [1], data: x } }, // extra
    ]
    for (const inputs of bad) {
      await expect(
        engine.run({ cid: tiny.cid, inputs }),
        JSON.stringify(Object.keys(inputs)),
      ).rejects.toMatchObject({
        name: 'InvalidTensorError',
      })
    }
    const { outputs } = await engine.run({ cid: tiny.cid, inputs: inputOf(tiny.spec) })
    expect(maxDiff(outputs.y!.data as Float32Array, refOf(tiny.spec))).toBeLessThan(1e-5)
  })

  it('rejects AbortError for a signal aborted before the run, while queued, and during the run', async () => {
    engine = createNodeEngine({ threads: 1 })
    await engine.loadModel(tiny.cid, tiny.bytes)
    const inputs = inputOf(tiny.spec)
    await expect(engine.run({ cid: tiny.cid, inputs }, AbortSignal.abort())).rejects.toMatchObject({
      name: 'AbortError',
    })
    const run = vi.spyOn(proto, 'run')
    // Queued behind another run: dropped before ORT sees it.
    const queued = new AbortController()
    const ahead = engine.run({ cid: tiny.cid, inputs })
    const dropped = engine.run({ cid: tiny.cid, inputs }, queued.signal)
    queued.abort()
    await expect(dropped).rejects.toMatchObject({ name: 'AbortError' })
    await ahead
    expect(run).toHaveBeenCalledTimes(1)
    // Inside ORT (which cannot be stopped): rejected at once, the result discarded.
    run.mockRestore()
    const during = new AbortController()
    const abortInside = function (this: ort.InferenceSession, ...args: unknown[]) {
      const result = ortRun.apply(this, args)
      during.abort() // ORT's work is queued on the thread: it runs to its end after this
      return result
    }
    vi.spyOn(proto, 'run').mockImplementation(abortInside as ort.InferenceSession['run'])
    await expect(engine.run({ cid: tiny.cid, inputs }, during.signal)).rejects.toMatchObject({
      name: 'AbortError',
    })
    vi.restoreAllMocks()
    const { outputs } = await engine.run({ cid: tiny.cid, inputs })
    expect(maxDiff(outputs.y!.data as Float32Array, refOf(tiny.spec))).toBeLessThan(1e-5)
  })

  it('keeps at most maxSessions resident, creates them one at a time, and re-creates an evicted one', async () => {
    engine = createNodeEngine({ threads: 1, maxSessions: 1 })
    const release = vi.spyOn(proto, 'release')
    let creating = 0
    let most = 0
    const create = ort.InferenceSession.create
    vi.spyOn(ort.InferenceSession, 'create').mockImplementation((async (
      ...args: Parameters<typeof create>
    ) => {
      most = Math.max(most, ++creating)
      try {
        return await (create as (...a: Parameters<typeof create>) => ReturnType<typeof create>)(...args)
      } finally {
        creating--
      }
    }) as typeof create)
    await engine.loadModel(tiny.cid, tiny.bytes)
    await engine.loadModel(alt.cid, alt.bytes)
    const results = await Promise.all(
      [tiny, alt, tiny].map((m) => engine.run({ cid: m.cid, inputs: inputOf(m.spec) })),
    )
    results.forEach((r, i) => {
      const spec = [tiny, alt, tiny][i]!.spec
      expect(maxDiff(r.outputs.y!.data as Float32Array, refOf(spec))).toBeLessThan(1e-5)
    })
    expect(most).toBe(1)
    expect(ort.InferenceSession.create).toHaveBeenCalledTimes(3)
    await vi.waitFor(() => expect(release).toHaveBeenCalledTimes(2))
  })

  it('close releases every session and refuses later calls', async () => {
    engine = createNodeEngine({ threads: 1 })
    await engine.loadModel(tiny.cid, tiny.bytes)
    await engine.loadModel(alt.cid, alt.bytes)
    await engine.run({ cid: tiny.cid, inputs: inputOf(tiny.spec) })
    await engine.run({ cid: alt.cid, inputs: inputOf(alt.spec) })
    const release = vi.spyOn(proto, 'release')
    engine.close()
    await vi.waitFor(() => expect(release).toHaveBeenCalledTimes(2))
    await expect(engine.run({ cid: tiny.cid, inputs: inputOf(tiny.spec) })).rejects.toMatchObject({
      name: 'InferenceError',
    })
    await expect(engine.loadModel(tiny.cid, tiny.bytes)).rejects.toMatchObject({ name: 'InferenceError' })
  })
})
