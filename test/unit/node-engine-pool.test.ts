/**
 * The Node engine's worker threads (node/engine-pool.ts): runs on two workers overlap, the main
 * thread stays free during a run, an abort answers at once, and a crashed worker is replaced.
 * The slow model is a MatMul chain (test/helpers/onnx-graph.ts) sized by its input.
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  createNodeEngine,
  type NodeEngine,
  type NodeEngineEvent,
  type NodeEngineOptions,
} from '../../node/engine.ts'
import { modelCid } from '../../src/shared/cid.ts'
import type { NamedTensors } from '../../src/shared/tensor.ts'
import { matmulChain } from '../helpers/onnx-graph.ts'

const slow = matmulChain(16)
const slowCid = (await modelCid(slow)).toString()
/** x [n, n] of 1/n: y = x, and a run costs 32·n³ flops. */
const square = (n: number): NamedTensors => ({
  x: { dtype: 'float32', dims: [n, n], data: new Float32Array(n * n).fill(1 / n) },
})
const ended = (e: NodeEngineEvent, worker: number) => e.type === 'exited' && e.worker === worker

describe('node engine workers', () => {
  let engine: NodeEngine | undefined
  let events: NodeEngineEvent[] = []
  let onEvent: (e: NodeEngineEvent) => void = () => {}
  const start = async (o: NodeEngineOptions = {}): Promise<NodeEngine> => {
    engine = createNodeEngine({
      threads: 1,
      ...o,
      onEvent: (e) => {
        events.push(e)
        onEvent(e)
      },
    })
    await engine.loadModel(slowCid, slow)
    return engine
  }
  const runs = () => events.filter((e) => e.type === 'started' || e.type === 'ended')
  afterEach(async () => {
    engine?.close()
    await engine?.closed() // a thread still inside ORT ends with its run
    engine = undefined
    events = []
    onEvent = () => {}
  })

  it('runs on two workers at once while the main thread keeps ticking', async () => {
    const engine = await start({ workers: 2 })
    await Promise.all([
      engine.run({ cid: slowCid, inputs: square(8) }),
      engine.run({ cid: slowCid, inputs: square(8) }),
    ])
    expect(events.filter((e) => e.type === 'spawned').map((e) => e.worker)).toEqual([1, 2])
    events = []
    const ticks: number[] = []
    const timer = setInterval(() => ticks.push(performance.timeOrigin + performance.now()), 1)
    const inputs = [square(768), square(768)]
    const t0 = performance.now()
    const [a, b] = await Promise.all(inputs.map((x) => engine.run({ cid: slowCid, inputs: x })))
    const wall = performance.now() - t0
    clearInterval(timer)
    const [s1, s2] = events.filter((e) => e.type === 'started').map((e) => (e as { at: number }).at)
    const [e1, e2] = events.filter((e) => e.type === 'ended').map((e) => (e as { at: number }).at)
    const during = ticks.filter((t) => t > Math.min(s1!, s2!) && t < Math.max(e1!, e2!)).length
    console.log(
      `2 runs of ${a!.timing.runMs.toFixed(0)} and ${b!.timing.runMs.toFixed(0)} ms in ${wall.toFixed(0)} ms; ` +
        `overlap ${(Math.min(e1!, e2!) - Math.max(s1!, s2!)).toFixed(0)} ms; ${during} ticks of 1 ms meanwhile`,
    )
    // Both were inside ORT at once, each on its own worker.
    expect(new Set(runs().map((e) => e.worker))).toEqual(new Set([1, 2]))
    expect(Math.max(s1!, s2!)).toBeLessThan(Math.min(e1!, e2!))
    expect(Math.min(a!.timing.runMs, b!.timing.runMs)).toBeGreaterThanOrEqual(50)
    expect(during).toBeGreaterThanOrEqual(10)
    for (const r of [a!, b!]) {
      expect(r.outputs.y!.dims).toEqual([768, 768])
      expect(Math.abs((r.outputs.y!.data as Float32Array)[0]! - 1 / 768)).toBeLessThan(1e-6)
    }
    // The caller's tensors were copied, not transferred: still whole.
    expect(inputs[0]!.x!.data.length).toBe(768 * 768)
  })

  it('answers an abort inside ORT at once; the worker leaves, ends after its run, and a fresh one runs the next', async () => {
    const engine = await start({ workers: 1 })
    await engine.run({ cid: slowCid, inputs: square(8) })
    const stop = new AbortController()
    let abortedAt = 0
    onEvent = (e) => {
      if (e.type === 'started' && e.worker === 1)
        setTimeout(() => {
          abortedAt = performance.now()
          stop.abort()
        }, 20)
    }
    await expect(engine.run({ cid: slowCid, inputs: square(1536) }, stop.signal)).rejects.toMatchObject({
      name: 'AbortError',
    })
    const answerMs = performance.now() - abortedAt
    onEvent = () => {}
    const next = await engine.run({ cid: slowCid, inputs: square(8) })
    const nextMs = performance.now() - abortedAt
    expect(next.outputs.y!.dims).toEqual([8, 8])
    await vi.waitFor(() => expect(events.some((e) => ended(e, 1))).toBe(true), { timeout: 30_000 })
    const exitMs = performance.now() - abortedAt
    console.log(
      `abort answered in ${answerMs.toFixed(1)} ms; next run (fresh worker) done at +${nextMs.toFixed(0)} ms; ` +
        `the old worker ended at +${exitMs.toFixed(0)} ms`,
    )
    expect(answerMs).toBeLessThan(100)
    expect(exitMs).toBeGreaterThan(answerMs + 100) // the run went on: nothing stops ORT
    expect(nextMs).toBeLessThan(exitMs) // the next run did not wait for it
    expect(events).toContainEqual({ worker: 1, type: 'exited', code: 0, expected: true })
    expect(events.filter((e) => e.type === 'started' && e.worker === 2)).toHaveLength(1)
  })

  it('fails the run of a crashed worker with InferenceError naming the cause, and replaces the worker', async () => {
    const engine = await start({ workers: 1 })
    engine.crashNextRun('throw')
    await expect(engine.run({ cid: slowCid, inputs: square(8) })).rejects.toMatchObject({
      name: 'InferenceError',
      message: 'ORT worker 1 failed: crash requested by the test hook',
    })
    engine.crashNextRun('exit')
    await expect(engine.run({ cid: slowCid, inputs: square(8) })).rejects.toMatchObject({
      name: 'InferenceError',
      message: 'ORT worker 2 exited with code 70',
    })
    const { outputs } = await engine.run({ cid: slowCid, inputs: square(8) })
    expect(outputs.y!.dims).toEqual([8, 8])
    expect(events.filter((e) => e.type === 'spawned').map((e) => e.worker)).toEqual([1, 2, 3])
    await vi.waitFor(() => expect(events.filter((e) => e.type === 'exited' && !e.expected)).toHaveLength(2))
  })

  it('runs a model on the worker that has its session, and sends its bytes to a worker only once', async () => {
    const engine = await start({ workers: 2 })
    const other = matmulChain(2)
    const otherCid = (await modelCid(other)).toString()
    await engine.loadModel(otherCid, other)
    await Promise.all([slowCid, otherCid].map((cid) => engine.run({ cid, inputs: square(8) })))
    for (const cid of [otherCid, slowCid, otherCid, slowCid, slowCid])
      await engine.run({ cid, inputs: square(8) })
    const sessions = events.filter((e) => e.type === 'session')
    expect(sessions.map((e) => e.worker).sort()).toEqual([1, 2])
    const byModel = (cid: string) => sessions.find((e) => 'cid' in e && e.cid === cid)!.worker
    for (const e of events.filter((x) => x.type === 'started')) {
      expect(e.worker).toBe(byModel((e as { cid: string }).cid))
    }
  })

  it('close during a run: the caller gets AbortError at once, and closed() waits for the thread', async () => {
    const engine = await start({ workers: 1 })
    await engine.run({ cid: slowCid, inputs: square(8) })
    events = []
    onEvent = (e) => {
      if (e.type === 'started') engine.close()
    }
    await expect(engine.run({ cid: slowCid, inputs: square(1024) })).rejects.toMatchObject({
      name: 'AbortError',
      message: 'node engine closed',
    })
    expect(events.some((e) => e.type === 'exited')).toBe(false) // still inside ORT
    await engine.closed()
    const order = events.filter((e) => e.type === 'ended' || e.type === 'released' || e.type === 'exited')
    expect(order.map((e) => e.type)).toEqual(['ended', 'released', 'exited'])
    await expect(engine.run({ cid: slowCid, inputs: square(8) })).rejects.toMatchObject({
      name: 'InferenceError',
    })
  })
})
