/**
 * The Node engine (node/engine.ts) on onnxruntime-node: generated models against the JS reference,
 * every tensor dtype through an Identity graph, named errors, aborts, eviction and release.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import * as ort from 'onnxruntime-node'
import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  createNodeEngine,
  type NodeEngine,
  type NodeEngineEvent,
  type NodeEngineOptions,
} from '../../node/engine.ts'
import { modelCid } from '../../src/shared/cid.ts'
import { type MlpSpec, mlpForward, mlpInput, mlpWeights } from '../../src/shared/mlp.ts'
import { ARRAY_TYPES, DTYPES, type NamedTensors } from '../../src/shared/tensor.ts'
import { identityModel } from '../helpers/onnx-graph.ts'

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

const inputOf = (spec: MlpSpec): NamedTensors => ({
  x: { dtype: 'float32', dims: [spec.batch, spec.layers[0]!], data: mlpInput(spec) },
})
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0)
const refOf = (spec: MlpSpec) => mlpForward(spec, mlpWeights(spec), mlpInput(spec))

describe('node engine', () => {
  let engine: NodeEngine | undefined
  /** What the workers said (NodeEngineOptions.onEvent): where the ORT calls are seen from this thread. */
  let events: NodeEngineEvent[] = []
  const start = (o: NodeEngineOptions = {}): NodeEngine => {
    engine = createNodeEngine({ ...o, onEvent: (e) => events.push(e) })
    return engine
  }
  const count = (type: NodeEngineEvent['type'], ok?: boolean) =>
    events.filter((e) => e.type === type && (ok === undefined || ('ok' in e && e.ok === ok))).length
  afterEach(async () => {
    engine?.close()
    await engine?.closed()
    engine = undefined
    events = []
  })

  it('reports the CPU EP, its threads and the ORT version', async () => {
    const engine = start({ threads: 2 })
    const caps = await engine.capabilities()
    expect(caps).toMatchObject({ eps: ['cpu'], adapter: null, threads: 2, crossOriginIsolated: false })
    expect(caps.ortVersion).toBe(`${ort.env.versions.common}+cpu`)
  })

  it('runs a model loaded by its CID and matches the JS reference within 1e-5', async () => {
    const engine = start({ threads: 1 })
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

  it('keeps model bytes given as a Node Buffer (as the file store reads them) whole across workers and runs', async () => {
    // A Buffer's slice() is a view of the same memory: transferring it would detach the engine's copy.
    const engine = start({ threads: 1, workers: 2 })
    // As fs.readFile gives it: a Buffer on an ArrayBuffer of its own, which a transfer can detach.
    const pooled = Buffer.allocUnsafeSlow(tiny.bytes.byteLength)
    pooled.set(tiny.bytes)
    await engine.loadModel(tiny.cid, pooled)
    const runs = await Promise.all(
      Array.from({ length: 6 }, () => engine.run({ cid: tiny.cid, inputs: inputOf(tiny.spec) })),
    )
    for (const r of runs)
      expect(maxDiff(r.outputs.y!.data as Float32Array, refOf(tiny.spec))).toBeLessThan(1e-5)
    expect(pooled.buffer.byteLength).toBeGreaterThan(0) // not detached
    expect(Buffer.compare(pooled, Buffer.from(tiny.bytes))).toBe(0)
  })

  it('passes every tensor dtype through unchanged', async () => {
    const engine = start({ threads: 1 })
    const bytes = identityModel(DTYPES)
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
    const engine = start({ threads: 1 })
    await expect(engine.loadModel(tiny.cid, alt.bytes)).rejects.toMatchObject({ name: 'ModelIntegrityError' })
    await expect(engine.run({ cid: tiny.cid, inputs: inputOf(tiny.spec) })).rejects.toMatchObject({
      name: 'UnknownModelError',
    })
  })

  it('fails the run of bytes that are not ONNX with InferenceError, and caches no session', async () => {
    const engine = start({ threads: 1 })
    const bytes = new TextEncoder().encode('not a model')
    const cid = (await modelCid(bytes)).toString()
    await engine.loadModel(cid, bytes)
    const inputs = inputOf(tiny.spec)
    await expect(engine.run({ cid, inputs })).rejects.toMatchObject({ name: 'InferenceError' })
    expect(count('session', false)).toBe(1)
    await expect(engine.run({ cid, inputs })).rejects.toMatchObject({ name: 'InferenceError' })
    expect(count('session', false)).toBe(2) // tried again, not a cached failure
    expect(count('session', true)).toBe(0)
  })

  it('answers UnknownModelError for a model never loaded, and after evict', async () => {
    const engine = start({ threads: 1 })
    await expect(engine.run({ cid: alt.cid, inputs: inputOf(alt.spec) })).rejects.toMatchObject({
      name: 'UnknownModelError',
    })
    await engine.loadModel(tiny.cid, tiny.bytes)
    await engine.run({ cid: tiny.cid, inputs: inputOf(tiny.spec) })
    expect(count('released')).toBe(0)
    expect(await engine.evict(tiny.cid)).toBe(true)
    expect(await engine.evict(tiny.cid)).toBe(false)
    await vi.waitFor(() => expect(count('released')).toBe(1))
    await expect(engine.run({ cid: tiny.cid, inputs: inputOf(tiny.spec) })).rejects.toMatchObject({
      name: 'UnknownModelError',
    })
  })

  it('refuses bad inputs with InvalidTensorError, and runs the next good one', async () => {
    const engine = start({ threads: 1 })
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
    // Only the first reached a worker (no session yet, so its inputs were unknown here): ORT ran none.
    expect(count('session', true)).toBe(1)
    expect(count('started')).toBe(0)
    const { outputs } = await engine.run({ cid: tiny.cid, inputs: inputOf(tiny.spec) })
    expect(maxDiff(outputs.y!.data as Float32Array, refOf(tiny.spec))).toBeLessThan(1e-5)
    expect(count('started')).toBe(1)
  })

  it('rejects AbortError for a signal aborted before the run, while queued, and during the run', async () => {
    const engine = start({ threads: 1 })
    await engine.loadModel(tiny.cid, tiny.bytes)
    const inputs = inputOf(tiny.spec)
    await expect(engine.run({ cid: tiny.cid, inputs }, AbortSignal.abort())).rejects.toMatchObject({
      name: 'AbortError',
    })
    expect(count('spawned')).toBe(0)
    // Queued behind another run: dropped before ORT sees it.
    const queued = new AbortController()
    const ahead = engine.run({ cid: tiny.cid, inputs })
    const dropped = engine.run({ cid: tiny.cid, inputs }, queued.signal)
    queued.abort()
    await expect(dropped).rejects.toMatchObject({ name: 'AbortError' })
    await ahead
    expect(count('started')).toBe(1)
    // Inside ORT: rejected at once, the result discarded, its process killed.
    const during = new AbortController()
    const onEvent = events.push.bind(events)
    events.push = (...e: NodeEngineEvent[]) => {
      if (e.some((x) => x.type === 'started')) during.abort()
      return onEvent(...e)
    }
    await expect(engine.run({ cid: tiny.cid, inputs }, during.signal)).rejects.toMatchObject({
      name: 'AbortError',
    })
    expect(count('started')).toBe(2)
    const { outputs } = await engine.run({ cid: tiny.cid, inputs })
    expect(maxDiff(outputs.y!.data as Float32Array, refOf(tiny.spec))).toBeLessThan(1e-5)
    expect(count('spawned')).toBe(2) // a fresh process ran it
    await vi.waitFor(() =>
      expect(events).toContainEqual({
        worker: 1,
        type: 'exited',
        code: null,
        signal: 'SIGKILL',
        expected: true,
      }),
    )
  })

  it('keeps at most maxSessions resident, creates them one at a time, and re-creates an evicted one', async () => {
    const engine = start({ threads: 1, maxSessions: 1 })
    await engine.loadModel(tiny.cid, tiny.bytes)
    await engine.loadModel(alt.cid, alt.bytes)
    const results = await Promise.all(
      [tiny, alt, tiny].map((m) => engine.run({ cid: m.cid, inputs: inputOf(m.spec) })),
    )
    results.forEach((r, i) => {
      const spec = [tiny, alt, tiny][i]!.spec
      expect(maxDiff(r.outputs.y!.data as Float32Array, refOf(spec))).toBeLessThan(1e-5)
    })
    // One worker, whose thread creates one session at a time: each released before the next is created.
    const sessions = events.filter((e) => e.type === 'session' || e.type === 'released')
    expect(sessions.map((e) => `${e.type} ${'cid' in e ? e.cid : ''}`)).toEqual([
      `session ${tiny.cid}`,
      `released ${tiny.cid}`,
      `session ${alt.cid}`,
      `released ${alt.cid}`,
      `session ${tiny.cid}`,
    ])
    expect(new Set(sessions.map((e) => e.worker))).toEqual(new Set([1]))
  })

  it('close releases every session, ends every worker and refuses later calls', async () => {
    const engine = start({ threads: 1 })
    await engine.loadModel(tiny.cid, tiny.bytes)
    await engine.loadModel(alt.cid, alt.bytes)
    await engine.run({ cid: tiny.cid, inputs: inputOf(tiny.spec) })
    await engine.run({ cid: alt.cid, inputs: inputOf(alt.spec) })
    expect(count('released')).toBe(0)
    engine.close()
    await engine.closed()
    expect(count('released')).toBe(2)
    expect(events.filter((e) => e.type === 'exited')).toEqual([
      { worker: 1, type: 'exited', code: 0, expected: true },
    ])
    await expect(engine.run({ cid: tiny.cid, inputs: inputOf(tiny.spec) })).rejects.toMatchObject({
      name: 'InferenceError',
    })
    await expect(engine.loadModel(tiny.cid, tiny.bytes)).rejects.toMatchObject({ name: 'InferenceError' })
  })
})
