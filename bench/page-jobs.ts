/**
 * Bench page, jobs: the same job in this tab's own worker and on a remote contributor, batches
 * across contributors, and a step-by-step cost profile of the job protocol's CPU work (read-only
 * use of src/jobs and src/trust: nothing here changes how jobs run).
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import type { InferenceEngine } from '../src/compute/bridge.ts'
import { encodeResult, parseJobRequest, startJobChecks, verifyJobResult } from '../src/jobs/messages.ts'
import type { CatalogEntry } from '../src/models/catalog.ts'
import { encodeFrame, FrameDecoder } from '../src/net/frame.ts'
import type { Peer } from '../src/peer.ts'
import type { NamedTensors } from '../src/shared/tensor.ts'
import { encodeTensors, tensorsCid } from '../src/shared/tensor-codec.ts'
import { openStore } from '../src/store/db.ts'
import { type JobBody, jobCid, newNonce, signJob } from '../src/trust/job-sig.ts'
import type { VerificationPolicy } from '../src/trust/policy.ts'
import { signReceipt } from '../src/trust/receipt.ts'
import { seededInputs } from './inputs.ts'
import { probes } from './page-probe.ts'
import { bytesRunner, rawJobBatch, serveRawJobs } from './page-rawjobs.ts'
import { rawAnswer } from './page-transport.ts'

export function entryOf(peer: Peer, model: string): CatalogEntry {
  const e = peer.catalog.byName(model) ?? peer.catalog.byCid(model)
  if (!e) throw new Error(`unknown model ${model}`)
  return e
}

export const inputsFor = (e: CatalogEntry, seed = 1): NamedTensors => seededInputs(e.inputs, seed)

export function jobsApi(peer: Peer, local: InferenceEngine) {
  const loaded = new Set<string>()
  async function localRun(e: CatalogEntry, inputs: NamedTensors) {
    if (!loaded.has(e.cid)) {
      const bytes = new Uint8Array(await (await fetch(peer.catalog.url(e))).arrayBuffer())
      await local.loadModel(e.cid, bytes)
      loaded.add(e.cid)
    }
    return local.run({ cid: e.cid, inputs, ep: 'wasm' })
  }

  return {
    inputs: (model: string) => inputsFor(entryOf(peer, model)),

    /**
     * n interleaved rounds: (a) this tab's worker, (b) `target` over WebRTC, (c) the same as b with
     * `persist: false`; wall ms and run ms of each.
     */
    async dispatch(o: { model: string; target: string; n: number; warmup: number }) {
      const e = entryOf(peer, o.model)
      const inputs = inputsFor(e)
      const out = { local: [] as number[], localRun: [] as number[] }
      const rem = {
        remote: [] as number[],
        remoteRtt: [] as number[],
        remoteRun: [] as number[],
        remoteExec: [] as number[],
        unpersisted: [] as number[],
      }
      const a = async (keep: boolean) => {
        const t0 = performance.now()
        const r = await localRun(e, inputs)
        if (!keep) return
        out.local.push(performance.now() - t0)
        out.localRun.push(r.timing.runMs)
      }
      const failures: string[] = []
      const remote = async (persist: boolean): Promise<Awaited<ReturnType<Peer['submit']>>> => {
        try {
          return await peer.submit(e.name, inputs, { peer: o.target, persist })
        } catch (err) {
          // Counted and retried: a failed job says nothing about dispatch time.
          if (failures.push(`${(err as Error).name}: ${(err as Error).message}`) > 5) throw err
          return remote(persist)
        }
      }
      const c = async (keep: boolean) => {
        const t0 = performance.now()
        await remote(false)
        if (keep) rem.unpersisted.push(performance.now() - t0)
      }
      const b = async (keep: boolean): Promise<void> => {
        const t0 = performance.now()
        const r = await remote(true)
        if (!keep) return
        rem.remote.push(performance.now() - t0)
        rem.remoteRtt.push(r.roundTripMs)
        rem.remoteRun.push(r.runMs)
        const t = r.receipt.body.timing
        rem.remoteExec.push((t.queueUs + t.runUs) / 1000)
      }
      const arms = [a, b, c]
      for (let i = 0; i < o.warmup; i++) for (const arm of arms) await arm(false)
      // Each round starts with the next arm: none always follows another.
      for (let i = 0; i < o.n; i++) for (let k = 0; k < 3; k++) await arms[(i + k) % 3]!(true)
      return { ...out, ...rem, failures }
    },

    /**
     * n jobs submitted at once to any contributor under `policy` (default: one replica, no
     * verification replicas); wall ms, replicas per job, and jobs per computing worker.
     */
    async batch(o: {
      model: string
      n: number
      policy?: Partial<VerificationPolicy>
      concurrency?: number
      persist?: boolean
    }) {
      const e = entryOf(peer, o.model)
      const inputs = inputsFor(e)
      const policy = o.policy ?? { redundancy: 1, quorum: 1, adaptive: false }
      const persist = o.persist ?? true
      const submit = () => peer.submit(e.name, inputs, { policy, timeoutMs: 120_000, persist })
      const rs: Awaited<ReturnType<typeof submit>>[] = []
      const failures: string[] = []
      let left = o.n
      const lane = async () => {
        while (left-- > 0) {
          try {
            rs.push(await submit())
          } catch (err) {
            // Counted, reported and run again (as in dispatch): a failed job says nothing of throughput.
            if (failures.push(`${(err as Error).name}: ${(err as Error).message}`) > 5) throw err
            left++
          }
        }
      }
      const t0 = performance.now()
      await Promise.all(Array.from({ length: Math.min(o.n, o.concurrency ?? o.n) }, lane))
      const ms = performance.now() - t0
      const byWorker: Record<string, number> = {}
      for (const r of rs) for (const w of r.workers) byWorker[w] = (byWorker[w] ?? 0) + 1
      const runMs = rs.flatMap((r) => r.receipts.map((x) => x.body.timing.runUs / 1000))
      return { ms, byWorker, runMs, attempts: rs.map((r) => r.attempts), failures }
    },

    /** Local-only rate: n runs back to back in this tab's worker (the one-core physical reference). */
    async localBatch(o: { model: string; n: number }) {
      const e = entryOf(peer, o.model)
      const inputs = inputsFor(e)
      await localRun(e, inputs)
      const t0 = performance.now()
      for (let i = 0; i < o.n; i++) await localRun(e, inputs)
      return { ms: performance.now() - t0 }
    },

    /** Contributor side of raw-channel jobs: answers `offer`, runs each input in this tab's worker. */
    rawJobsAnswer(o: { id: string; offer: string; model: string }) {
      const e = entryOf(peer, o.model)
      const run = bytesRunner(inputsFor(e), async (i) => (await localRun(e, i)).outputs)
      return rawAnswer(o.id, o.offer, serveRawJobs(run))
    },

    /** Requester side: n jobs of `model`'s input bytes over the raw channels (rawOffer + rawConnect). */
    rawJobBatch(o: { model: string; channels: string[]; n: number; depth: number }) {
      const d = Object.values(inputsFor(entryOf(peer, o.model)))[0]!.data as Float32Array
      return rawJobBatch(o.channels, new Uint8Array(d.buffer, d.byteOffset, d.byteLength), o.n, o.depth)
    },

    profile: (o: { model: string; n: number }) => profileSteps(entryOf(peer, o.model), localRun, o.n),

    /** n sequential jobs on `target` with the probes on: what one job really does, per job. */
    async probe(o: { model: string; target: string; n: number }) {
      const e = entryOf(peer, o.model)
      const inputs = inputsFor(e)
      await peer.submit(e.name, inputs, { peer: o.target })
      probes.reset()
      let jobs = 0
      for (let i = 0; i < o.n; i++) {
        await peer.submit(e.name, inputs, { peer: o.target }).then(
          () => jobs++,
          () => {}, // a failed job still did its share of the work counted: close enough for counts
        )
      }
      return { tallies: probes.read(), jobs }
    },
  }
}

/** Median ms of each CPU step a job takes on both sides, run here in one tab with fresh keys. */
async function profileSteps(
  e: CatalogEntry,
  run: (e: CatalogEntry, i: NamedTensors) => Promise<{ outputs: NamedTensors }>,
  n: number,
) {
  const inputs = inputsFor(e)
  const { outputs } = await run(e, inputs)
  const [reqKey, workKey] = await Promise.all([generateKeyPair('Ed25519'), generateKeyPair('Ed25519')])
  const requester = peerIdFromPrivateKey(reqKey).toString()
  const worker = peerIdFromPrivateKey(workKey).toString()
  const store = await openStore('peer-compute-bench-profile')
  const times: Record<string, number[]> = {}
  const note = (step: string, x: number) => {
    times[step] = [...(times[step] ?? []), x]
  }
  const time = async <T>(step: string, f: () => T | Promise<T>): Promise<T> => {
    const t0 = performance.now()
    const v = await f()
    note(step, performance.now() - t0)
    return v
  }
  for (let i = 0; i < n; i++) {
    const input = await time('req: input CID (encode + sha256)', () => tensorsCid(inputs))
    const body: JobBody = {
      v: 1,
      model: CID.parse(e.cid),
      input,
      requester,
      deadline: Date.now() + 1e5,
      nonce: newNonce(),
    }
    const job = await time('req: job CID', () => jobCid(body))
    const sig = await time('req: sign job (Ed25519)', () => signJob(body, reqKey))
    const jobBytes = await time('req: encode job frame', () =>
      encodeFrame({ t: 'job', v: 1, body, sig, inputs: encodeTensors(inputs) }),
    )
    const frame = await time('ctr: decode job frame', () => decodeOne(jobBytes))
    await time('ctr: check job (sig + input CID)', () => startJobChecks(parseJobRequest(frame)).checked)
    const output = await time('ctr: output CID', () => tensorsCid(outputs))
    const timing = { queueUs: 0, runUs: 1 }
    const rb = {
      v: 1 as const,
      job,
      model: body.model,
      input,
      output,
      worker,
      requester,
      ep: 'wasm',
      adapter: 'none',
      timing,
      ts: Date.now(),
    }
    const receipt = await time('ctr: sign receipt', () => signReceipt(rb, workKey))
    const resBytes = await time('ctr: encode result frame', () => encodeFrame(encodeResult(outputs, receipt)))
    const res = await time('req: decode result frame', () => decodeOne(resBytes))
    await time('req: verify result (output CID + receipt)', () =>
      verifyJobResult(res, { jobCid: job, model: body.model, input, requester, worker }),
    )
    // What the durable requester writes per step: its job record and the resumable job (inputs, outputs).
    const rec = {
      id: `p-${i}`,
      model: e.cid,
      modelName: e.name,
      status: 'running' as const,
      submittedAt: 0,
      verified: false,
    }
    const state = { inputs: encodeTensors(inputs), outputs: encodeTensors(outputs) }
    await time('req: one job-state write (record + inputs + outputs)', () =>
      store.saveJobState(rec, { id: rec.id, createdAt: Date.now(), state }),
    )
    await time('req: one job-state write (record, end)', () => store.saveJobState(rec, null))
    note('bytes: job frame', jobBytes.byteLength)
    note('bytes: result frame', resBytes.byteLength)
  }
  store.stop()
  return times
}

function decodeOne(bytes: Uint8Array) {
  const dec = new FrameDecoder(64 * 1024 * 1024)
  const frames = dec.push(bytes)
  if (!frames[0]) throw new Error('no frame decoded')
  return frames[0]
}
