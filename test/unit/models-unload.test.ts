/**
 * One record of loaded models: the executor asks the engine's residency instead of keeping a list,
 * and a model the hub deletes or evicts for quota leaves the engine too (unloadRemovedModels).
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { logger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { describe, expect, it } from 'vitest'
import { mlpModelBytes } from '../../scripts/gen-models.ts'
import type { InferenceEngine } from '../../src/compute/bridge.ts'
import { createResidency } from '../../src/compute/residency.ts'
import { createExecutor } from '../../src/jobs/execute.ts'
import type { CheckedJobRequest } from '../../src/jobs/messages.ts'
import { createCatalog } from '../../src/models/catalog.ts'
import { createModelHub, type ModelRemoved, unloadRemovedModels } from '../../src/models/hub.ts'
import { ModelTooLargeError, UnknownModelError } from '../../src/shared/errors.ts'
import { memModelStore } from '../helpers/model-store.ts'
import { outcome } from '../helpers/stub-worker.ts'

const x = { dtype: 'float32' as const, dims: [1], data: new Float32Array(1) }
const modelA = mlpModelBytes({ seed: 1, layers: [16, 32, 8], batch: 1 })
const modelB = mlpModelBytes({ seed: 2, layers: [16, 32, 8], batch: 1 })

/**
 * An engine over a real residency that logs loads, runs and evicts. Like the contributor's guarded
 * view, it counts a model as resident only within `limit.bytes`, and refuses to load a larger one.
 */
function stubEngine(limit = { bytes: Number.POSITIVE_INFINITY }) {
  const residency = createResidency()
  const log: string[] = []
  const short = (cid: string) => cid.slice(-4)
  const engine: InferenceEngine = {
    capabilities: async () => ({
      eps: ['wasm'],
      adapter: null,
      threads: 1,
      crossOriginIsolated: false,
      ortVersion: 'x',
    }),
    async loadModel(cid, bytes) {
      if (bytes.byteLength > limit.bytes) throw new ModelTooLargeError(`${cid} is over the limit`)
      log.push(`load ${short(cid)}`)
      residency.add(cid, bytes)
    },
    async run({ cid }) {
      if (!residency.resident(cid)) throw new UnknownModelError(`${cid} is not loaded`)
      log.push(`run ${short(cid)}`)
      return { outputs: { y: x }, ep: 'wasm', timing: { sessionMs: 0, runMs: 1 } }
    },
    async evict(cid) {
      log.push(`evict ${short(cid)}`)
      return residency.drop(cid)
    },
    resident(cid) {
      const r = residency.resident(cid)
      return r && r.bytes <= limit.bytes ? r : undefined
    },
    close() {},
  }
  return { engine, log, short }
}

async function setup(limit?: { bytes: number }) {
  const hub = await createModelHub({
    store: memModelStore(),
    catalog: createCatalog([], 'http://127.0.0.1/'),
    log: logger('test'),
  })
  const { engine, log, short } = stubEngine(limit)
  const removed: ModelRemoved[] = []
  hub.onRemoved((r) => void removed.push(r))
  const detach = unloadRemovedModels(hub, engine)
  const key = await generateKeyPair('Ed25519')
  const selfId = peerIdFromPrivateKey(key).toString()
  const execute = createExecutor({ privateKey: key, selfId, engine, models: hub, adapter: () => 'none' })
  const cidOf = async (s: string) => CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode(s)))
  let n = 0
  const job = async (model: string): Promise<CheckedJobRequest> => ({
    body: {
      v: 1,
      model: CID.parse(model),
      input: await cidOf('input'),
      requester: selfId,
      deadline: Date.now() + 60_000,
      nonce: new Uint8Array(16),
    },
    inputs: { x },
    jobCid: await cidOf(`job ${n++}`),
  })
  const run = async (model: string) => execute(await job(model), selfId, new AbortController().signal)
  return { hub, engine, log, short, removed, detach, run }
}

describe('one record of loaded models', () => {
  it('the executor loads a model only when the engine does not hold it', async () => {
    const t = await setup()
    const { cid } = await t.hub.importFile(modelA)
    await t.run(cid)
    await t.run(cid)
    expect(t.log).toEqual([`load ${t.short(cid)}`, `run ${t.short(cid)}`, `run ${t.short(cid)}`])
    await t.engine.evict(cid) // unloaded elsewhere (a settings switch, a hub delete): loaded again
    await t.run(cid)
    expect(t.log.slice(3)).toEqual([`evict ${t.short(cid)}`, `load ${t.short(cid)}`, `run ${t.short(cid)}`])
  })

  it('a model loaded before the size limit shrank goes through loadModel and is refused', async () => {
    const limit = { bytes: Number.POSITIVE_INFINITY }
    const t = await setup(limit)
    const { cid } = await t.hub.importFile(modelA)
    await t.run(cid)
    limit.bytes = modelA.byteLength - 1
    expect(await outcome(t.run(cid))).toBe(ModelTooLargeError.NAME)
    expect(t.log).toEqual([`load ${t.short(cid)}`, `run ${t.short(cid)}`])
  })

  it('deleting a model from the hub unloads it from the engine', async () => {
    const t = await setup()
    const { cid } = await t.hub.importFile(modelA)
    await t.run(cid)
    await t.hub.delete(cid)
    expect(t.removed).toEqual([{ cid, reason: 'deleted' }])
    expect(t.log.at(-1)).toBe(`evict ${t.short(cid)}`)
    expect(t.engine.resident?.(cid)).toBeUndefined()
    // Neither cached nor in the catalog, and no peers: the deleted model is not served from memory.
    expect(await outcome(t.run(cid))).toBe(UnknownModelError.NAME)
    await t.hub.importFile(modelA) // imported again: loaded again
    await t.run(cid)
    expect(t.log.slice(-2)).toEqual([`load ${t.short(cid)}`, `run ${t.short(cid)}`])
  })

  it('a model the quota evicts is unloaded; the one kept stays loaded', async () => {
    const t = await setup()
    const a = (await t.hub.importFile(modelA)).cid
    await t.run(a)
    const b = (await t.hub.importFile(modelB)).cid
    await t.run(b)
    await t.hub.setQuota(Math.max(modelA.byteLength, modelB.byteLength)) // room for one: the older goes
    expect(t.removed).toEqual([{ cid: a, reason: 'evicted' }])
    expect(t.engine.resident?.(a)).toBeUndefined()
    expect(t.engine.resident?.(b)).toEqual({ bytes: modelB.byteLength })
  })

  it('after detach, a removal leaves the engine alone', async () => {
    const t = await setup()
    const { cid } = await t.hub.importFile(modelA)
    await t.run(cid)
    t.detach()
    await t.hub.delete(cid)
    expect(t.removed).toHaveLength(1)
    expect(t.engine.resident?.(cid)).toEqual({ bytes: modelA.byteLength })
  })
})
