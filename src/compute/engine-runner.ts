/**
 * A dispute runner (dispute-runner.ts) over any InferenceEngine: the engine starts at the first run
 * and is closed after `idleMs` without one; a model is loaded under its CID, and the models of
 * earlier disputes leave it when a new one comes.
 */

import { modelCid } from '../shared/cid.ts'
import { InferenceError } from '../shared/errors.ts'
import type { NamedTensors } from '../shared/tensor.ts'
import type { Ep, InferenceEngine } from './bridge.ts'

/** An engine whose close() may end later (node/engine.ts `closed()`: its worker processes' exits). */
export type DisputeRun = (
  model: Uint8Array,
  inputs: NamedTensors,
  signal?: AbortSignal,
) => Promise<NamedTensors>

export interface DisputeRunner {
  run: DisputeRun
  /** The execution provider its runs compute on (a traced job's receipt names it). */
  ep?: string
  /** Ends its worker; resolves once that worker is gone (a Node worker process, once it exits). */
  close(): Promise<void>
}

export type ClosableEngine = InferenceEngine & { closed?(): Promise<void> }

export interface EngineRunnerOptions {
  /** The EP each run asks for (default: the engine's choice). */
  ep?: Ep
  /** Closes the engine after this long without a run (default 60 s). */
  idleMs?: number
}

export function engineRunner(start: () => ClosableEngine, o: EngineRunnerOptions = {}): DisputeRunner {
  const idleMs = o.idleMs ?? 60_000
  let engine: ClosableEngine | undefined
  /** The models loaded in `engine`, and the runs using each model. */
  const loaded = new Set<string>()
  const uses = new Map<string, number>()
  const ending = new Set<Promise<void>>()
  let timer: ReturnType<typeof setTimeout> | undefined
  let closed = false

  const end = (e: ClosableEngine) => {
    if (engine === e) {
      engine = undefined
      loaded.clear()
    }
    e.close()
    const done = (e.closed?.() ?? Promise.resolve()).catch(() => {})
    ending.add(done)
    void done.then(() => ending.delete(done))
  }

  async function load(e: ClosableEngine, cid: string, bytes: Uint8Array, signal?: AbortSignal) {
    if (loaded.has(cid)) return
    for (const old of loaded) {
      if (uses.has(old)) continue
      loaded.delete(old)
      await e.evict(old).catch(() => {})
    }
    await e.loadModel(cid, bytes, signal)
    loaded.add(cid)
  }

  // Callers pass the same trace and node models again and again: each is hashed once.
  const cids = new WeakMap<Uint8Array, Promise<string>>()
  const cidOf = (model: Uint8Array) => {
    let c = cids.get(model)
    if (!c) {
      c = modelCid(model).then((x) => x.toString())
      cids.set(model, c)
    }
    return c
  }
  return {
    ...(o.ep ? { ep: o.ep } : {}),
    async run(model, inputs, signal) {
      if (closed) throw new InferenceError('the dispute runner is closed')
      const cid = await cidOf(model)
      clearTimeout(timer)
      engine ??= start()
      const e = engine
      uses.set(cid, (uses.get(cid) ?? 0) + 1)
      try {
        await load(e, cid, model, signal)
        const { outputs } = await e.run({ cid, inputs, ...(o.ep ? { ep: o.ep } : {}) }, signal)
        return outputs
      } finally {
        const n = uses.get(cid)! - 1
        if (n > 0) uses.set(cid, n)
        else uses.delete(cid)
        if (uses.size === 0 && !closed && engine === e) {
          timer = setTimeout(() => end(e), idleMs)
          ;(timer as { unref?: () => void }).unref?.() // an idle runner keeps no Node process alive
        }
      }
    },
    async close() {
      closed = true
      clearTimeout(timer)
      if (engine) end(engine)
      await Promise.all(ending)
    },
  }
}
