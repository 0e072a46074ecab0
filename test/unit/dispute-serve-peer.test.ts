/**
 * The contributor's side of disputes in createPeer (src/peer-dispute.ts): the protocol registered over
 * a Node runtime, commits admitted only for jobs whose receipts are in this peer's credit log, and
 * the dispute runners (Node: onnxruntime-node thread; browser: its own worker) at 'disabled'.
 */
import '../../node/polyfills.ts'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey, Stream } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { streamPair } from '@libp2p/utils'
import type { CID } from 'multiformats/cid'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { createNodeDisputeRunner } from '../../node/dispute-runner.ts'
import { createLocks } from '../../node/runtime.ts'
import { createFileStore } from '../../node/store/index.ts'
import { createDisputeRunner, type DisputeRunner } from '../../src/compute/dispute-runner.ts'
import { disputePlan } from '../../src/dispute/commit.ts'
import { withIntermediateOutputs } from '../../src/dispute/onnx-graph.ts'
import type { DisputeServer } from '../../src/dispute/serve.ts'
import { DISPUTE_LIMITS } from '../../src/dispute/wire-frames.ts'
import { createCatalog } from '../../src/models/catalog.ts'
import { encodeFrame, type Frame, FrameDecoder, readFrame, sendEncoded } from '../../src/net/frame.ts'
import { createPeer, type Peer } from '../../src/peer.ts'
import { admitServed, serveDisputes } from '../../src/peer-dispute.ts'
import type { PeerState } from '../../src/peer-state.ts'
import { modelCid } from '../../src/shared/cid.ts'
import { createLifecycle } from '../../src/shared/lifecycle.ts'
import { DISPUTE_PROTOCOL } from '../../src/shared/protocol.ts'
import type { NamedTensors } from '../../src/shared/tensor.ts'
import { encodeTensors, tensorsCid } from '../../src/shared/tensor-codec.ts'
import type { CreditsInternals } from '../../src/trust/credits.ts'
import { signReceipt } from '../../src/trust/receipt.ts'
import { floats, ortRun } from '../helpers/ort-run.ts'
import { stubEngine } from '../helpers/stub-engine.ts'
import { exposeAsWorker } from '../helpers/stub-worker.ts'

const tiny = new Uint8Array(readFileSync(resolve(import.meta.dirname, '../../public/models/mlp-tiny.onnx')))
const inputs: NamedTensors = { x: floats([1, 16], 3) }
const traceOf = (bytes: Uint8Array) => withIntermediateOutputs(disputePlan(bytes).model)

const dirs: string[] = []
const open: Stream[] = []
const stops: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const s of open.splice(0)) s.abort(new Error('test over'))
})
afterAll(async () => {
  for (const stop of stops.splice(0)) await stop().catch(() => {})
  for (const d of dirs) await rm(d, { recursive: true, force: true })
})

const engine = stubEngine()

/** createPeer over a Node runtime, no relay, with `runner` as its dispute runner. */
async function nodePeer(runner: DisputeRunner): Promise<{ peer: Peer; key: PrivateKey }> {
  const dir = await mkdtemp(join(tmpdir(), 'pc-dispute-'))
  dirs.push(dir)
  const key = await generateKeyPair('Ed25519')
  const peer = await createPeer({
    runtime: {
      store: await createFileStore(dir),
      privateKey: key,
      catalog: createCatalog([], 'file:///'),
      locks: createLocks(),
      disputeRunner: runner,
    },
    storeName: `peer-compute:${dir}`,
    engine,
    relays: [],
    iceServers: [],
    contribute: false,
    election: false,
  })
  stops.push(() => peer.stop())
  return { peer, key }
}

/** A receipt of `job` served by the key's peer for `requester`, appended to its credit log. */
async function served(peer: Peer, key: PrivateKey, job: CID, requester: string, input: CID) {
  const receipt = await signReceipt(
    {
      v: 1,
      job,
      model: await modelCid(tiny),
      input,
      output: await modelCid(new TextEncoder().encode('out')),
      worker: peer.id,
      requester,
      ep: 'cpu',
      adapter: 'cpu',
      timing: { queueUs: 0, runUs: 1 },
      ts: Date.now(),
    },
    key,
  )
  await (peer.credits as CreditsInternals).append(receipt)
}

const jobCid = (name: string) => modelCid(new TextEncoder().encode(name))

/** Sends a commit for `job` to `server` as `requester` and reads its answer. */
async function commit(server: DisputeServer, requester: string, job: CID): Promise<Frame | null> {
  const [client, side] = await streamPair({ protocol: DISPUTE_PROTOCOL })
  open.push(client, side)
  void server.serve(side, requester)
  const frame = {
    t: 'commit',
    job,
    model: await modelCid(tiny),
    inputs: encodeTensors(inputs),
    compare: { kind: 'exact' },
  }
  await sendEncoded(client, encodeFrame(frame), { closed: (c) => c ?? new Error('closed') })
  return readFrame(client, new FrameDecoder(DISPUTE_LIMITS.outputs))
}

describe('disputes in createPeer', () => {
  it('registers the dispute protocol, and closes the runner at stop', async () => {
    let closed = 0
    const runner: DisputeRunner = {
      run: async () => ({}),
      close: async () => void closed++,
    }
    const { peer } = await nodePeer(runner)
    expect(peer.node.getProtocols()).toContain(DISPUTE_PROTOCOL)
    await peer.stop()
    expect(closed).toBe(1)
  })

  it('commits only to a job whose receipt is in the credit log, for its requester and inputs', async () => {
    const runner = createNodeDisputeRunner()
    const { peer, key } = await nodePeer({ run: async () => ({}), close: async () => {} })
    const input = await tensorsCid(inputs)
    const job = await jobCid('job served')
    await served(peer, key, job, 'alice', input)
    await served(peer, key, await jobCid('other inputs'), 'alice', await jobCid('not these'))

    const admit = admitServed(peer.credits, peer.id)
    const model = await modelCid(tiny)
    expect(await admit({ requester: 'alice', job, model, input })).toBe(true)
    expect(await admit({ requester: 'bob', job, model, input })).toBe(false)
    expect(await admit({ requester: 'alice', job: await jobCid('never'), model, input })).toBe(false)
    expect(await admit({ requester: 'alice', job, model: input, input })).toBe(false)
    const later = admitServed(peer.credits, peer.id, { now: () => Date.now() + 2 * 60 * 60_000 })
    expect(await later({ requester: 'alice', job, model, input })).toBe(false) // out of the window

    // The same wiring createPeer uses, over a recorded node: handler on start, gone at stop.
    const handled = new Map<string, unknown>()
    const node = {
      handle: async (p: string, h: unknown) => void handled.set(p, h),
      unhandle: async (p: string) => void handled.delete(p),
    }
    const tinyCid = model.toString()
    const models = { has: async (c: string) => c === tinyCid, get: async () => tiny }
    const state = { privateKey: key, credits: peer.credits, models } as unknown as PeerState
    const life = createLifecycle()
    const server = serveDisputes(
      { runtime: { disputeRunner: runner } as never },
      { node: node as never, state, selfId: peer.id, log: logger('test') },
      life,
    )
    await life.start()
    expect([...handled.keys()]).toEqual([DISPUTE_PROTOCOL])
    expect(await commit(server, 'alice', await jobCid('never'))).toMatchObject({
      t: 'error',
      code: 'refused',
    })
    expect(await commit(server, 'bob', job)).toMatchObject({ t: 'error', code: 'refused' })
    expect(await commit(server, 'alice', job)).toMatchObject({ t: 'commitment' })
    await life.stop()
    expect(handled.size).toBe(0)
  }, 30_000)
})

describe('dispute runners', () => {
  it('Node: runs the trace variant at disabled, as onnxruntime-node does, and starts again after idling', async () => {
    const runner = createNodeDisputeRunner({ idleMs: 50 })
    stops.push(() => runner.close())
    const trace = traceOf(tiny)
    const expected = await ortRun(trace, inputs, 'disabled')
    const got = await runner.run(trace, inputs)
    expect(Object.keys(got).sort()).toEqual(Object.keys(expected).sort())
    for (const [name, t] of Object.entries(expected)) expect(got[name]!.data).toEqual(t.data)
    await new Promise((r) => setTimeout(r, 200)) // its thread goes
    const again = await runner.run(trace, inputs)
    expect(again[Object.keys(expected)[0]!]!.data).toEqual(Object.values(expected)[0]!.data)
    await runner.close()
    await expect(runner.run(trace, inputs)).rejects.toMatchObject({ name: 'InferenceError' })
  }, 30_000)

  it('browser: its own worker, initialised at disabled on one WASM thread, ended when idle', async () => {
    const inits: unknown[] = []
    const runs: { cid: string; ep?: string }[] = []
    const loads: string[] = []
    let terminated = 0
    const worker = () =>
      exposeAsWorker(
        () => ({
          init: async (o: unknown) => {
            inits.push(o)
            return {
              eps: ['wasm'],
              adapter: null,
              threads: 1,
              crossOriginIsolated: false,
              ortVersion: 'stub',
            }
          },
          loadModel: async (cid: string) => void loads.push(cid),
          run: async (r: { cid: string; ep?: string; inputs: NamedTensors }) => {
            runs.push({ cid: r.cid, ...(r.ep ? { ep: r.ep } : {}) })
            return { outputs: r.inputs, ep: 'wasm', timing: { sessionMs: 0, runMs: 0 } }
          },
        }),
        () => terminated++,
      )
    const runner = createDisputeRunner({ createWorker: worker, idleMs: 50 })
    const out = await runner.run(tiny, inputs)
    expect(out.x!.data).toEqual(inputs.x!.data)
    expect(inits).toEqual([{ numThreads: 1, allowWebGpu: false, graphOptimization: 'disabled' }])
    const cid = (await modelCid(tiny)).toString()
    expect(loads).toEqual([cid])
    expect(runs).toEqual([{ cid, ep: 'wasm' }])
    await expect.poll(() => terminated).toBe(1)
    await runner.run(tiny, inputs) // a fresh worker, given the model again
    expect(inits).toHaveLength(2)
    expect(loads).toEqual([cid, cid])
    await runner.close()
    expect(terminated).toBe(2)
  })
})
