/**
 * The worker bridge (src/compute/bridge.ts) over stub workers: a cancelled run inside ORT is stopped
 * by its stop flag in shared memory; a started one without a flag by terminating its worker, whose
 * other calls go on in a fresh one that gets the models back and re-creates their sessions; a queued
 * run is only dropped.
 */
import { describe, expect, it } from 'vitest'
import { createInferenceBridge } from '../../src/compute/bridge.ts'
import { AbortError, InferenceError } from '../../src/shared/errors.ts'

import { exposeAsWorker, outcome } from '../helpers/stub-worker.ts'

const CID = 'bafkreidyllbzbuwb2fdgttvsc6notidx5yr5wgl6z2qhcptapjy3pkxbja'
const x = { dtype: 'float32' as const, dims: [1], data: new Float32Array(1) }
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

interface StubWorker {
  log: string[]
  terminated: boolean
  /** Each run's stop flag byte, by run id. */
  flags: Map<string, Uint8Array>
}

/**
 * Workers whose runs take `runMs`, one at a time, and post WorkerNotes as the real one does: with
 * `flags`, a stop flag in shared memory that the run checks every 5 ms, as ORT does between kernels.
 */
function stubWorkers(runMs: number, flags = false, answerAfterMs = 0) {
  const made: StubWorker[] = []
  const createWorker = () => {
    const w: StubWorker = { log: [], terminated: false, flags: new Map() }
    made.push(w)
    const cancelled = new Set<string>()
    const answerNow = new Map<string, (e: Error) => void>() // as the worker's cancel rejects a call at once
    let queue: Promise<unknown> = Promise.resolve()
    const caps = { eps: ['wasm'], adapter: null, threads: 1, crossOriginIsolated: false, ortVersion: 'x' }
    return exposeAsWorker(
      (post) => ({
        init: async () => caps,
        capabilities: async () => caps,
        warm: async () => void w.log.push('warm'),
        loadModel: async (cid: string) => void w.log.push(`load ${cid.slice(-4)}`),
        prepare: async (cid: string, ep: string) => void w.log.push(`prepare ${cid.slice(-4)} ${ep}`),
        run: (req: { runId: string }) => {
          const work = queue.then(async () => {
            if (cancelled.has(req.runId)) throw new AbortError(`run ${req.runId} cancelled`)
            post({ runStarted: req.runId })
            w.log.push(`start ${req.runId}`)
            const flag = new Uint8Array(new SharedArrayBuffer(8))
            // As workers/ort-stop.ts: the flag may be set only while `ctl` holds this run's seq.
            const ctl = new Int32Array(new SharedArrayBuffer(4))
            Atomics.store(ctl, 0, 1)
            w.flags.set(req.runId, flag.subarray(3, 4))
            try {
              if (flags) post({ runStop: req.runId, buffer: flag.buffer, at: 3, ctl: ctl.buffer, seq: 1 })
              for (let t = 0; t < runMs; t += 5) {
                if (Atomics.load(flag, 3)) {
                  w.log.push(`stopped ${req.runId}`)
                  throw new InferenceError('Exiting due to terminate flag being set to true.')
                }
                await sleep(5)
              }
              w.log.push(`end ${req.runId}`)
              // Out of ORT (its options freed) but not yet answered, as after session.run returns.
              Atomics.store(ctl, 0, 0)
              await sleep(answerAfterMs)
              return { outputs: { y: x }, ep: 'wasm', timing: { sessionMs: 0, runMs } }
            } finally {
              Atomics.store(ctl, 0, 0)
              post({ runEnded: req.runId })
            }
          })
          queue = work.catch(() => {})
          const early = new Promise<never>((_, reject) => answerNow.set(req.runId, reject))
          return Promise.race([work, early]).finally(() => answerNow.delete(req.runId))
        },
        cancel: async (runId: string) => {
          cancelled.add(runId)
          answerNow.get(runId)?.(new AbortError(`run ${runId} cancelled`))
          return true
        },
        evict: async () => true,
      }),
      () => {
        w.terminated = true
      },
    )
  }
  return { made, createWorker }
}

describe('inference bridge: stopping runs', () => {
  it('a run inside ORT stops by its flag: the worker and its sessions stay', async () => {
    const s = stubWorkers(300, true)
    const bridge = createInferenceBridge({ createWorker: s.createWorker, idleTimeoutMs: 0 })
    await bridge.loadModel(CID, new Uint8Array())
    const stop = new AbortController()
    const first = outcome(bridge.run({ cid: CID, inputs: { x }, runId: 'a' }, stop.signal))
    const second = bridge.run({ cid: CID, inputs: { x }, runId: 'b' }) // queued behind 'a'
    await sleep(100)
    stop.abort()
    expect(await first).toBe(AbortError.NAME)
    expect((await second).ep).toBe('wasm')
    await sleep(300) // past the grace: no terminate came
    expect(s.made).toHaveLength(1)
    expect(s.made[0]!.terminated).toBe(false)
    expect(s.made[0]!.log).toEqual(['load xbja', 'start a', 'stopped a', 'start b', 'end b'])
    bridge.close()
  })

  it("a stop that crosses the end of a run sets no flag: those bytes may be the next run's", async () => {
    const s = stubWorkers(50, true, 40)
    const bridge = createInferenceBridge({ createWorker: s.createWorker, idleTimeoutMs: 0 })
    await bridge.loadModel(CID, new Uint8Array())
    const stop = new AbortController()
    const first = outcome(bridge.run({ cid: CID, inputs: { x }, runId: 'a' }, stop.signal))
    await sleep(75) // 'a' has left ORT and not answered yet
    expect(s.made[0]!.log).toContain('end a')
    stop.abort()
    expect(await first).toBe(AbortError.NAME)
    expect(s.made[0]!.flags.get('a')![0]).toBe(0)
    bridge.close()
  })

  it('terminates the worker of a started run without a flag; its queued calls go on in a warmed fresh one', async () => {
    const s = stubWorkers(300)
    const bridge = createInferenceBridge({ createWorker: s.createWorker, idleTimeoutMs: 0 })
    await bridge.loadModel(CID, new Uint8Array())
    const stop = new AbortController()
    const first = outcome(bridge.run({ cid: CID, inputs: { x }, runId: 'a' }, stop.signal))
    const second = bridge.run({ cid: CID, inputs: { x }, runId: 'b' }) // queued behind 'a'
    await sleep(100)
    const t0 = performance.now()
    stop.abort()
    expect(await first).toBe(AbortError.NAME)
    expect(performance.now() - t0).toBeLessThan(20)
    await sleep(60) // the run had 50 ms to show a stop flag
    expect(s.made[0]!.terminated).toBe(true)
    expect(s.made[0]!.log).toEqual(['load xbja', 'start a']) // 'a' never ended, 'b' never began there
    expect((await second).ep).toBe('wasm')
    // The fresh worker: runtime and session re-created, the model re-sent once, and 'b' run.
    expect(s.made).toHaveLength(2)
    expect(s.made[1]!.log.sort()).toEqual(['end b', 'load xbja', 'prepare xbja auto', 'start b', 'warm'])
    bridge.close()
  })

  it('a queued run is dropped without stopping the worker', async () => {
    const s = stubWorkers(100)
    const bridge = createInferenceBridge({ createWorker: s.createWorker, idleTimeoutMs: 0 })
    await bridge.loadModel(CID, new Uint8Array())
    const stop = new AbortController()
    const first = bridge.run({ cid: CID, inputs: { x }, runId: 'a' })
    const second = outcome(bridge.run({ cid: CID, inputs: { x }, runId: 'b' }, stop.signal))
    await sleep(30)
    stop.abort()
    expect(await second).toBe(AbortError.NAME)
    await first
    await sleep(10)
    expect(s.made).toHaveLength(1)
    expect(s.made[0]!.terminated).toBe(false)
    expect(s.made[0]!.log).toEqual(['load xbja', 'start a', 'end a'])
    bridge.close()
  })

  it('with restartNow false the fresh worker waits for warm(), which re-creates the sessions', async () => {
    const s = stubWorkers(300)
    let paused = false
    const bridge = createInferenceBridge({
      createWorker: s.createWorker,
      idleTimeoutMs: 0,
      restartNow: () => !paused,
    })
    await bridge.loadModel(CID, new Uint8Array())
    await bridge.run({ cid: CID, inputs: { x }, runId: 'a' }) // ran on WASM: the session to re-create
    const stop = new AbortController()
    const run = outcome(bridge.run({ cid: CID, inputs: { x }, runId: 'b' }, stop.signal))
    await sleep(50)
    paused = true
    stop.abort()
    expect(await run).toBe(AbortError.NAME)
    await sleep(70)
    expect(s.made.map((w) => w.terminated)).toEqual([true]) // nothing started while paused
    paused = false
    await bridge.warm?.()
    expect(s.made[1]!.log).toEqual(['warm', 'load xbja', 'prepare xbja wasm'])
    bridge.close()
  })
})
