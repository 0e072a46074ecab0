/**
 * What the `/peer-compute/job/1.1.0` compliance suite needs from a transport, plus transport-free
 * pieces every harness can reuse: a deterministic fake engine (y = 2x) and a fixed model source.
 * A harness can be an in-memory stream pair or two real peers over WebRTC; the suite sees only this.
 */
import type { Connection, PrivateKey, Stream } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { createAdmission } from '../../src/compute/admission.ts'
import type { InferenceEngine, RunParams, RunResult } from '../../src/compute/bridge.ts'
import { createJobHandler } from '../../src/jobs/handler.ts'
import type { ModelSource } from '../../src/models/store.ts'
import { modelCid } from '../../src/shared/cid.ts'
import { AbortError, InferenceError, UnknownModelError } from '../../src/shared/errors.ts'
import type { NamedTensors } from '../../src/shared/tensor.ts'

export interface PeerKeys {
  privateKey: PrivateKey
  /** The peer id string derived from `privateKey`. */
  id: string
}

/** Drives the contributor's engine. Async so a harness can forward it into another page or process. */
export interface EngineControl {
  /** Runs started from now on wait (honouring their abort signal) until the returned function is called. */
  hold(): Promise<() => Promise<void>>
  /** The next run throws InferenceError. */
  failNextRun(): Promise<void>
  /** Resolves once `n` runs in total have started. */
  runsStarted(n: number): Promise<void>
  /** Whether the signal given to the most recent run has been aborted. */
  lastRunAborted(): Promise<boolean>
}

export interface Harness {
  requester: PeerKeys
  /** The contributor's identity; the suite signs forged receipts with it for the lying-contributor cases. */
  contributor: PeerKeys
  /** Requester side of a connection to the contributor running `createJobHandler`. */
  connection: Connection
  /**
   * Requester side of a connection to a peer with the contributor's identity whose job streams are
   * served by `serve` instead of the honest handler: the suite plays a misbehaving contributor.
   */
  rogue(serve: (stream: Stream) => Promise<void>): Promise<Connection>
  /** A model CID the contributor's ModelSource serves. */
  model: string
  /** A model CID the contributor's ModelSource answers with UnknownModelError. */
  unknownModel: string
  /** The contributor closes a job stream left idle this long between jobs. */
  idleStreamMs: number
  /** Job slots the contributor's admission was created with. */
  slots: number
  setContributing(on: boolean): Promise<void>
  freeSlots(): Promise<number>
  engine: EngineControl
}

export interface HarnessFactory {
  setup(): Promise<Harness>
  teardown(h: Harness): Promise<void>
}

/** What the fake engine computes: every float32 input `k` becomes output `k + '_out'` = 2 * input. */
export function expectedOutputs(inputs: NamedTensors): NamedTensors {
  const out: NamedTensors = {}
  for (const [name, t] of Object.entries(inputs)) {
    if (!(t.data instanceof Float32Array)) throw new InferenceError(`${name}: only float32 is supported`)
    out[`${name}_out`] = { dtype: 'float32', dims: [...t.dims], data: t.data.map((v) => v * 2) }
  }
  return out
}

/** An in-thread `InferenceEngine` with the knobs of EngineControl. */
export class FakeEngine implements InferenceEngine, EngineControl {
  private gate: Promise<void> | undefined
  private failNext = false
  private started = 0
  private lastSignal: AbortSignal | undefined
  private waiters: Array<{ n: number; resolve: () => void }> = []

  async capabilities() {
    return {
      eps: ['wasm' as const],
      adapter: null,
      threads: 1,
      crossOriginIsolated: false,
      ortVersion: 'fake',
    }
  }

  private loaded = new Set<string>()

  async loadModel(cid: string): Promise<void> {
    this.loaded.add(cid)
  }

  /** As the real bridge's residency: a loaded model is not loaded again. */
  resident(cid: string): { bytes: number } | undefined {
    return this.loaded.has(cid) ? { bytes: 0 } : undefined
  }

  async run(params: RunParams, signal?: AbortSignal): Promise<RunResult> {
    this.started++
    this.lastSignal = signal
    for (const w of this.waiters.filter((w) => w.n <= this.started)) w.resolve()
    this.waiters = this.waiters.filter((w) => w.n > this.started)
    if (this.failNext) {
      this.failNext = false
      throw new InferenceError('fake engine failure')
    }
    if (this.gate) await abortable(this.gate, signal)
    if (signal?.aborted) throw new AbortError('run aborted')
    return { outputs: expectedOutputs(params.inputs), ep: 'wasm', timing: { sessionMs: 0, runMs: 1 } }
  }

  async evict(): Promise<boolean> {
    return false
  }

  close(): void {}

  async hold(): Promise<() => Promise<void>> {
    let open!: () => void
    this.gate = new Promise<void>((resolve) => {
      open = resolve
    })
    return async () => {
      this.gate = undefined
      open()
    }
  }

  async failNextRun(): Promise<void> {
    this.failNext = true
  }

  runsStarted(n: number): Promise<void> {
    if (this.started >= n) return Promise.resolve()
    return new Promise((resolve) => this.waiters.push({ n, resolve }))
  }

  async lastRunAborted(): Promise<boolean> {
    return this.lastSignal?.aborted ?? false
  }
}

function abortable(p: Promise<void>, signal?: AbortSignal): Promise<void> {
  if (!signal) return p
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(new AbortError('run aborted'))
    if (signal.aborted) return onAbort()
    signal.addEventListener('abort', onAbort, { once: true })
    p.then(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, reject)
  })
}

/** A ModelSource holding exactly one model. */
export async function fakeModelSource(bytes: Uint8Array): Promise<{ source: ModelSource; cid: string }> {
  const cid = (await modelCid(bytes)).toString()
  const source: ModelSource = {
    async get(want) {
      if (want !== cid) throw new UnknownModelError(`model ${want} is not known here`)
      return bytes
    },
    has: async (want) => want === cid,
    cached: async () => [cid],
  }
  return { source, cid }
}

/** An unsigned varint, as frames use for their length prefix (for hand-written frames). */
export function varint(n: number): Uint8Array {
  const out: number[] = []
  for (; n >= 0x80; n = Math.floor(n / 0x80)) out.push((n % 0x80) | 0x80)
  return Uint8Array.from([...out, n])
}

/** Job slots and the idle-stream time of the contributor under test, in every harness. */
export const SLOTS = 1
export const IDLE_MS = 400

/**
 * The contributor under test, fresh for each case: the honest job handler with `SLOTS` slots over a
 * FakeEngine and a one-model source. Transports (in-memory, WebRTC) only route streams to `job.handler`.
 */
export async function contributorUnderTest(contributor: PeerKeys) {
  const admission = createAdmission({ maxSlots: SLOTS, contributing: true })
  const engine = new FakeEngine()
  const models = await fakeModelSource(new TextEncoder().encode('compliance model'))
  const unknown = await fakeModelSource(new TextEncoder().encode('a model nobody has'))
  const job = createJobHandler({
    privateKey: contributor.privateKey,
    selfId: contributor.id,
    admission,
    engine,
    models: models.source,
    log: logger('peer-compute:test:contributor'),
    adapter: () => 'cpu',
    requestTimeoutMs: 2_000,
    idleStreamMs: IDLE_MS,
  })
  return { admission, engine, job, model: models.cid, unknownModel: unknown.cid }
}
