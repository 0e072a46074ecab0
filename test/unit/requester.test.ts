/** The requester over interface stubs: an in-memory journal, scripted dispatch, no network or storage. */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { logger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import { describe, expect, it } from 'vitest'
import { createAdaptive } from '../../src/jobs/adaptive.ts'
import type { Dispatcher } from '../../src/jobs/dispatch.ts'
import type { JobSpec, Journal, PendingJob } from '../../src/jobs/journal.ts'
import type { DispatchResult, QuorumState } from '../../src/jobs/quorum.ts'
import { createRequester } from '../../src/jobs/requester.ts'
import { JobRejectedError } from '../../src/shared/errors.ts'
import type { NamedTensors } from '../../src/shared/tensor.ts'
import { tensorsCid } from '../../src/shared/tensor-codec.ts'
import type { JobRecord } from '../../src/store/schema.ts'
import { policyFor } from '../../src/trust/policy.ts'
import { signReceipt } from '../../src/trust/receipt.ts'
import { createReputation } from '../../src/trust/reputation.ts'

const keys = await Promise.all([0, 1, 2].map(() => generateKeyPair('Ed25519')))
const peers = keys.map((k) => peerIdFromPrivateKey(k).toString())
const self = 'requester'
const cid = CID.parse('bafkreidyllbzbuwb2fdgttvsc6notidx5yr5wgl6z2qhcptapjy3pkxbja')
const x: NamedTensors = { x: { dtype: 'float32', dims: [1, 2], data: Float32Array.of(1, 2) } }
const y: NamedTensors = { y: { dtype: 'float32', dims: [1, 1], data: Float32Array.of(3) } }

async function result(i: number): Promise<DispatchResult> {
  const body = {
    v: 1 as const,
    job: cid,
    model: cid,
    input: cid,
    output: await tensorsCid(y),
    worker: peers[i]!,
    requester: self,
    ep: 'wasm',
    adapter: 'none',
    timing: { queueUs: 0, runUs: 1000 },
    ts: 0,
  }
  return {
    job: cid.toString(),
    worker: peers[i]!,
    outputs: y,
    receipt: await signReceipt(body, keys[i]!),
    roundTripMs: 1,
  }
}

/** A journal kept in memory, with the calls it got. */
function memoryJournal(): Journal & {
  records: Map<string, JobRecord>
  open: Map<string, PendingJob>
  calls: string[]
} {
  const records = new Map<string, JobRecord>()
  const open = new Map<string, PendingJob>()
  const calls: string[] = []
  return {
    records,
    open,
    calls,
    durable: true,
    async begin(id, spec: JobSpec, q: QuorumState, inputs) {
      calls.push(`begin ${id}`)
      open.set(id, { id, spec, q, inputs: async () => inputs })
    },
    progress: () => ({ mark() {}, close: async () => {} }),
    async end(rec) {
      calls.push(`end ${rec.id} ${rec.status}`)
      records.set(rec.id, rec)
      open.delete(rec.id)
    },
    async put(rec) {
      records.set(rec.id, rec)
    },
    get: async (id) => records.get(id),
    pending: async (ids) => [...open.values()].filter((p) => !ids || ids.includes(p.id)),
    discard: (id) => void open.delete(id),
  }
}

type Script = 'ok' | 'refuse'

async function setup(script: Script[], opts: { noPath?: string } = {}) {
  const journal = memoryJournal()
  const sent: string[] = []
  const dispatcher: Dispatcher = {
    async send(_model, _inputs, _cid, peer) {
      sent.push(peer)
      const i = peers.indexOf(peer)
      if (script[i] === 'refuse') {
        throw Object.assign(new JobRejectedError(`${peer} rejected the job (bad-request): no`), {
          code: 'bad-request',
        })
      }
      return result(i)
    },
    close() {},
  }
  const reputation = await createReputation({
    allReputation: async () => [],
    putReputations: async () => {},
    clearReputation: async () => {},
  })
  const live = peers.slice(0, script.length)
  const requester = createRequester({
    dispatcher,
    selfId: self,
    scheduler: {
      pick: (_m: string, exclude: ReadonlySet<string>) =>
        live.find((p) => !exclude.has(p)) ? { id: live.find((p) => !exclude.has(p))! } : undefined,
      eligible: (exclude: ReadonlySet<string>) => live.filter((p) => !exclude.has(p)).length,
    } as never,
    journal,
    reputation,
    adaptive: createAdaptive(reputation),
    outputsOf: () => undefined,
    log: logger('test:requester'),
    capacityChanged: () => new Promise((r) => setTimeout(r, 5)),
    noPath: () => opts.noPath,
  })
  return { requester, journal, sent, reputation }
}

const policy = policyFor('tensor', { redundancy: 2, quorum: 2, adaptive: false })

describe('requester', () => {
  it('verifies a job, journals its start and its end, and leaves nothing pending', async () => {
    const { requester, journal, sent } = await setup(['ok', 'ok'])
    const out = await requester.submit(cid.toString(), 'm', policy, x, { id: 'j1' })
    expect(out.state).toBe('verified')
    expect(out.workers.sort()).toEqual(peers.slice(0, 2).sort())
    expect(sent).toHaveLength(2)
    expect(journal.calls).toEqual(['begin j1', 'end j1 verified'])
    expect(journal.records.get('j1')?.record).toBeInstanceOf(Uint8Array)
    expect(journal.open.size).toBe(0)
  })

  it('runs a job id once: a second submit gets the first outcome, a later one the stored one', async () => {
    const { requester, sent } = await setup(['ok', 'ok'])
    const [a, b] = await Promise.all([
      requester.submit(cid.toString(), 'm', policy, x, { id: 'same' }),
      requester.submit(cid.toString(), 'm', policy, x, { id: 'same' }),
    ])
    expect(a).toBe(b)
    const again = await requester.submit(cid.toString(), 'm', policy, x, { id: 'same' })
    expect(again.record).toEqual(a.record)
    expect(sent).toHaveLength(2)
  })

  it('writes nothing for persist: false', async () => {
    const { requester, journal } = await setup(['ok', 'ok'])
    expect((await requester.submit(cid.toString(), 'm', policy, x, { persist: false })).state).toBe(
      'verified',
    )
    expect(journal.calls).toEqual([])
  })

  it('resumes a job a previous page left pending, once', async () => {
    const { requester, journal, sent } = await setup(['ok', 'ok'])
    const spec: JobSpec = { v: 1, model: cid.toString(), modelName: 'm', policy, createdAt: Date.now() }
    journal.open.set('left', {
      id: 'left',
      spec,
      q: { replicas: [], target: 2, quorum: 2, adaptiveSingle: false },
      inputs: async () => x,
    })
    const [outcomes, again] = await Promise.all([requester.resume(), requester.resume()])
    expect([...outcomes, ...again].map((o) => o.id)).toEqual(['left', 'left'])
    expect(sent).toHaveLength(2)
    expect(journal.records.get('left')?.status).toBe('verified')
  })

  it('a job whose inputs were lost ends failed, saying so', async () => {
    const { requester, journal } = await setup(['ok', 'ok'])
    const spec: JobSpec = { v: 1, model: cid.toString(), modelName: 'm', policy, createdAt: Date.now() }
    journal.open.set('lost', {
      id: 'lost',
      spec,
      q: { replicas: [], target: 2, quorum: 2, adaptiveSingle: false },
      inputs: async () => undefined,
    })
    expect(await requester.resume()).toEqual([])
    expect(journal.records.get('lost')).toMatchObject({ status: 'failed', reason: 'inputs lost' })
  })

  it('a refusal goes to another contributor; the refuser is counted once others verified', async () => {
    const { requester, reputation } = await setup(['refuse', 'ok', 'ok'])
    const out = await requester.submit(cid.toString(), 'm', policy, x)
    expect(out.workers.sort()).toEqual(peers.slice(1, 3).sort())
    expect(out.attempts).toBe(2) // the refusal is not an attempt
    await expect.poll(() => reputation.get(peers[0]!).refused).toBe(1)
  })

  it('fails as a refusal, listing it, only when every contributor refused', async () => {
    const { requester } = await setup(['refuse', 'refuse'])
    const err = await requester
      .submit(cid.toString(), 'm', policy, x)
      .catch((e: Error & { code?: string }) => e)
    expect(err).toMatchObject({ name: 'JobRejectedError', code: 'bad-request' })
    expect(err).toBeInstanceOf(JobRejectedError) // its own class, not a renamed JobFailedError
    expect((err as Error).message).toMatch(/every eligible contributor refused \(2\)/)
  })

  it('fails fast with NoDirectPathError when no contributor can be linked', async () => {
    const { requester } = await setup([], { noPath: 'no direct path to any of 1 contributor(s): ICE failed' })
    const started = Date.now()
    const err = await requester.submit(cid.toString(), 'm', policy, x).catch((e: Error) => e)
    expect((err as Error).name).toBe('NoDirectPathError')
    expect(Date.now() - started).toBeLessThan(1000)
  })
})
