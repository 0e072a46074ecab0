/**
 * Pausing stops the compute, not only the job. Measured from the OS: the CPU time of the
 * contributor's busy worker threads (Linux /proc schedstat, ns), sampled every 2 ms around a pause
 * in the middle of a multi-second run. ORT ends the run at its next kernel (the bridge sets the run's
 * stop flag); a kernel too long for that gets the worker terminated, which Chromium completes
 * within 2 s, and resuming brings up a fresh worker with the session re-created.
 */
import { readdirSync, readFileSync } from 'node:fs'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { encodeFloatModel, type FloatGraph } from '../../scripts/gen-models.ts'
import { modelCid } from '../../src/shared/cid.ts'
import { mlpWeights } from '../../src/shared/mlp.ts'
import { importUrl, serveModels, type TestModel } from '../helpers/models.ts'
import { peerId, type Swarm, startSwarm, waitForContributors } from '../helpers/swarm.ts'

const weights = (nIn: number, nOut: number, seed: number) =>
  mlpWeights({ seed, layers: [nIn, nOut], batch: 1 })[0]!.W

async function model(name: string, g: Omit<FloatGraph, 'name'>): Promise<TestModel> {
  const bytes = encodeFloatModel({ name, ...g }, { producerName: 'peer-compute tests' })
  const [, dims] = g.inputs[0]!
  const spec = { seed: 0, layers: [dims[1]!], batch: dims[0]! }
  return { spec, bytes, cid: (await modelCid(bytes)).toString(), path: `/test-models/${name}.onnx` }
}

/** x[512, 1024] → 96 × (MatMul, Relu), one shared 4 MiB weight: ~100 GFLOP in 192 short kernels. */
const manyKernels = () =>
  model('many-kernels', {
    nodes: Array.from({ length: 96 }, (_, l) => [
      { opType: 'MatMul', input: [l ? `h${l - 1}` : 'x', 'W'], output: [`m${l}`] },
      { opType: 'Relu', input: [`m${l}`], output: [l === 95 ? 'y' : `h${l}`] },
    ]).flat(),
    initializers: [{ name: 'W', dims: [1024, 1024], data: weights(1024, 1024, 9) }],
    inputs: [['x', [512, 1024]]],
    outputs: [['y', [512, 1024]]],
  })

/** x[2048, 1024] → MatMul [1024, 8192] (one 34 GFLOP kernel, seconds on 1 thread) → MatMul [8192, 8]. */
const oneLongKernel = () =>
  model('one-long-kernel', {
    nodes: [
      { opType: 'MatMul', input: ['x', 'W1'], output: ['h'] },
      { opType: 'MatMul', input: ['h', 'W2'], output: ['y'] },
    ],
    initializers: [
      { name: 'W1', dims: [1024, 8192], data: weights(1024, 8192, 10) },
      { name: 'W2', dims: [8192, 8], data: weights(8192, 8, 11) },
    ],
    inputs: [['x', [2048, 1024]]],
    outputs: [['y', [2048, 8]]],
  })

/** CPU ns of every thread of these processes, keyed `pid/tid`. */
function threadCpu(pids: number[]): Map<string, number> {
  const out = new Map<string, number>()
  for (const pid of pids) {
    let tids: string[] = []
    try {
      tids = readdirSync(`/proc/${pid}/task`)
    } catch {}
    for (const tid of tids) {
      try {
        const ns = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0])
        out.set(`${pid}/${tid}`, ns)
      } catch {} // the thread ended
    }
  }
  return out
}
const comm = (key: string) => {
  try {
    return readFileSync(`/proc/${key.replace('/', '/task/')}/comm`, 'utf8').trim()
  } catch {
    return '(ended)'
  }
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Submits one job of `m` (its input filled with 0.01) from `requester` to `target`: 'served' or the error's name. */
const submit = (requester: Page, target: string, m: TestModel) =>
  requester.evaluate(
    async ({ target, cid, dims }) => {
      const x = { dtype: 'float32' as const, dims, data: new Float32Array(dims[0]! * dims[1]!).fill(0.01) }
      return window.__peer.submit(cid, { x }, { peer: target, timeoutMs: 60_000, persist: false }).then(
        () => 'served',
        (e: Error) => e.name,
      )
    },
    { target, cid: m.cid, dims: [m.spec.batch, m.spec.layers[0]!] },
  )

type Done = { at: number; ok: boolean; code?: string; runMs?: number }
type Watch = { __done: Done[]; __terminated: number[] }
/** Records the page's job-done events and its calls of Worker.terminate() (times). */
const watch = (page: Page) =>
  page.evaluate(() => {
    const w = window as unknown as Watch
    w.__done = []
    w.__terminated = []
    window.__peer.controls.events.addEventListener('job-done', (e) => {
      const d = e.detail
      w.__done.push({ at: Date.now(), ok: d.ok, code: d.code, runMs: d.runMs })
    })
    const terminate = Worker.prototype.terminate
    Worker.prototype.terminate = function (this: Worker) {
      w.__terminated.push(Date.now())
      terminate.call(this)
    }
  })
const watched = (page: Page) =>
  page.evaluate(() => {
    const { __done, __terminated } = window as unknown as Watch
    return { done: __done, terminated: __terminated }
  })

describe('pause stops the compute', () => {
  let swarm: Swarm
  let a: Page
  let b: Page
  let bId: string
  let renderers: number[]

  beforeAll(async () => {
    swarm = await startSwarm({ tabs: 2 })
    ;[a, b] = swarm.tabs as [Page, Page]
    bId = await peerId(b)
    await b.evaluate(() => window.__peer.setContributing(true))
    await watch(b)
    await waitForContributors(a, [bId])
    const cdp = await a.context().browser()!.newBrowserCDPSession()
    const { processInfo } = (await cdp.send('SystemInfo.getProcessInfo')) as {
      processInfo: { type: string; id: number }[]
    }
    renderers = processInfo.filter((p) => p.type === 'renderer').map((p) => p.id)
  })
  afterAll(() => swarm?.stop())

  /**
   * The worker threads computing, once one of them has been busy for 150 ms (three 50 ms windows at
   * over half a core): the inference worker, and with threads its ORT pool workers.
   */
  async function computing(): Promise<string[]> {
    const streak = new Map<string, number>()
    let last = threadCpu(renderers)
    for (let i = 0; i < 200; i++) {
      await sleep(50)
      const now = threadCpu(renderers)
      const busy = [...now].filter(
        ([k, ns]) => ns - (last.get(k) ?? ns) > 25e6 && comm(k) === 'DedicatedWorker',
      )
      for (const k of streak.keys()) if (!busy.some(([b]) => b === k)) streak.delete(k)
      for (const [k] of busy) streak.set(k, (streak.get(k) ?? 0) + 1)
      if ([...streak.values()].some((n) => n >= 3)) return busy.map(([k]) => k)
      last = now
    }
    throw new Error('no worker thread got busy')
  }

  /**
   * Runs a job of `m` on B (once before, untimed: it creates the session), pauses B `intoRunMs`
   * after the next one got computing and measures for `sampleMs`, then resumes and runs one more.
   */
  async function pauseMidRun(m: TestModel, threads: number, intoRunMs: number, sampleMs: number) {
    for (const t of [a, b]) {
      await serveModels(t, [m])
      expect(await importUrl(t, m)).toBe(m.cid)
    }
    await b.evaluate((n) => window.__peer.controls.update({ wasmThreads: n }), threads)
    expect(await submit(a, bId, m)).toBe('served')
    const runMs = (await watched(b)).done.at(-1)!.runMs!

    const job = submit(a, bId, m)
    await b.waitForFunction(() => window.__peer.controls.running().length > 0, null, { polling: 10 })
    const busy = await computing()
    await sleep(intoRunMs)

    const samples: { at: number; ns: number }[] = []
    let sampling = true
    const sampler = (async () => {
      const seen = new Map<string, number>() // an ended thread keeps the CPU time it had
      while (sampling) {
        const now = threadCpu(renderers)
        for (const k of busy) if (now.has(k)) seen.set(k, now.get(k)!)
        samples.push({ at: Date.now(), ns: busy.reduce((s, k) => s + (seen.get(k) ?? 0), 0) })
        await sleep(2)
      }
    })()
    await sleep(50)
    const pausedAt = await b.evaluate(() => {
      const at = Date.now()
      window.__peer.controls.pause()
      return at
    })
    await sleep(sampleMs)
    sampling = false
    await sampler
    const final = samples.at(-1)!.ns
    const stoppedAt = samples.find((s) => s.ns >= final - 1e6)!.at // within 1 ms of CPU of the end
    const { done, terminated } = await watched(b)
    const handedBack = done.findLast((d) => d.code === 'cancelled')
    const result = {
      runMs,
      stopMs: stoppedAt - pausedAt,
      handedBackMs: handedBack ? handedBack.at - pausedAt : undefined,
      terminatedMs: terminated.filter((t) => t >= pausedAt).map((t) => t - pausedAt),
      busyThreads: busy.map(comm),
    }
    expect(await job).not.toBe('served')

    await b.evaluate(() => window.__peer.controls.resume())
    await waitForContributors(a, [bId])
    await sleep(1000) // a fresh worker re-creates the session meanwhile
    const t0 = Date.now()
    expect(await submit(a, bId, m)).toBe('served')
    const next = (await watched(b)).done.at(-1)!
    console.log(JSON.stringify({ threads, ...result, nextMs: Date.now() - t0, nextRunMs: next.runMs }))
    expect(next.ok).toBe(true)
    return result
  }

  it('a pause mid-run stops the worker within 100 ms, and keeps it: 1 thread', async () => {
    const r = await pauseMidRun(await manyKernels(), 1, 200, 600)
    expect(r.runMs).toBeGreaterThan(1500)
    expect(r.stopMs).toBeLessThan(100)
    expect(r.handedBackMs).toBeLessThan(100)
    expect(r.terminatedMs).toEqual([]) // stopped by its flag: the worker and its session stay
    expect(r.busyThreads).not.toContain('(ended)')
  })

  it('the same with 2 threads', async () => {
    const r = await pauseMidRun(await manyKernels(), 2, 200, 600)
    expect(r.stopMs).toBeLessThan(100)
    expect(r.terminatedMs).toEqual([])
  })

  it('a kernel longer than the grace: the worker is terminated; resuming brings up a fresh one', async () => {
    const r = await pauseMidRun(await oneLongKernel(), 1, 100, 2500)
    expect(r.handedBackMs).toBeLessThan(100)
    expect(r.terminatedMs).toHaveLength(1)
    expect(r.terminatedMs[0]).toBeGreaterThanOrEqual(240) // its flag was set: 250 ms (FLAG_GRACE_MS) to end
    expect(r.stopMs).toBeLessThan(2200) // the kernel's end or Chromium's 2 s grace, whichever is first
  })
})
