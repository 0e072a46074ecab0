/**
 * The Node engine's ORT processes (node/engine-pool.ts): runs on two processes overlap, the main
 * thread stays free during a run, an abort answers at once and kills the process inside ORT, a
 * crashed process is replaced, and none outlives close() or its parent.
 * The slow model is a MatMul chain (test/helpers/onnx-graph.ts) sized by its input.
 */
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  createNodeEngine,
  type NodeEngine,
  type NodeEngineEvent,
  type NodeEngineOptions,
} from '../../node/engine.ts'
import { forkWorker } from '../../node/engine-pool.ts'
import { modelCid } from '../../src/shared/cid.ts'
import { JobHandedBackError } from '../../src/shared/errors.ts'
import type { NamedTensors } from '../../src/shared/tensor.ts'
import { matmulChain } from '../helpers/onnx-graph.ts'

const slow = matmulChain(16)
const slowCid = (await modelCid(slow)).toString()
/** x [n, n] of 1/n: y = x, and a run costs 32·n³ flops. */
const square = (n: number): NamedTensors => ({
  x: { dtype: 'float32', dims: [n, n], data: new Float32Array(n * n).fill(1 / n) },
})
const ended = (e: NodeEngineEvent, worker: number) => e.type === 'exited' && e.worker === worker
/** Whether that pid runs: signal 0 only checks, and a zombie (an orphan not yet reaped) runs nothing. */
const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
  } catch (e) {
    expect((e as NodeJS.ErrnoException).code).toBe('ESRCH')
    return false
  }
  const stat = existsSync(`/proc/${pid}/stat`) ? readFileSync(`/proc/${pid}/stat`, 'utf8') : ''
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
}
const pidOf = (events: NodeEngineEvent[], worker: number): number =>
  events.flatMap((e) => (e.type === 'spawned' && e.worker === worker && e.pid ? [e.pid] : []))[0]!

describe('node engine processes', () => {
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
    await engine?.closed()
    engine = undefined
    events = []
    onEvent = () => {}
  })

  it('runs on two processes at once while the main thread keeps ticking', async () => {
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

  it('starts every process on warm() (a contributor starting), so a first run forks none', async () => {
    const engine = await start({ workers: 2 })
    expect(events.filter((e) => e.type === 'spawned')).toEqual([])
    await engine.warm!()
    await engine.warm!() // again (a resume): none more while both live
    expect(events.filter((e) => e.type === 'spawned').map((e) => e.worker)).toEqual([1, 2])
    await Promise.all([
      engine.run({ cid: slowCid, inputs: square(8) }),
      engine.run({ cid: slowCid, inputs: square(8) }),
    ])
    expect(events.filter((e) => e.type === 'spawned').map((e) => e.worker)).toEqual([1, 2])
    expect(new Set(runs().map((e) => e.worker))).toEqual(new Set([1, 2]))
    engine.close()
    await engine.warm!() // closed: starts nothing
    expect(events.filter((e) => e.type === 'spawned')).toHaveLength(2)
  })

  it('answers an abort inside ORT at once and kills its process; a fresh one runs the next', async () => {
    const engine = await start({ workers: 1 })
    await engine.run({ cid: slowCid, inputs: square(8) })
    const pid = pidOf(events, 1)
    expect(alive(pid)).toBe(true)
    const stop = new AbortController()
    let abortedAt = 0
    let exitedAt = 0
    onEvent = (e) => {
      if (e.type === 'started' && e.worker === 1)
        setTimeout(() => {
          abortedAt = performance.now()
          stop.abort()
        }, 20)
      if (ended(e, 1)) exitedAt = performance.now()
    }
    // About 1 s of ORT on one thread: long enough to abort mid-run.
    await expect(engine.run({ cid: slowCid, inputs: square(1536) }, stop.signal)).rejects.toMatchObject({
      name: 'AbortError',
    })
    const answerMs = performance.now() - abortedAt
    await vi.waitFor(() => expect(exitedAt).toBeGreaterThan(0), { timeout: 2000 })
    const exitMs = exitedAt - abortedAt
    expect(alive(pid)).toBe(false)
    const next = await engine.run({ cid: slowCid, inputs: square(8) })
    const nextMs = performance.now() - abortedAt
    console.log(
      `abort answered in ${answerMs.toFixed(1)} ms; its process gone at +${exitMs.toFixed(1)} ms; ` +
        `next run (fresh process) done at +${nextMs.toFixed(0)} ms`,
    )
    expect(next.outputs.y!.dims).toEqual([8, 8])
    expect(answerMs).toBeLessThan(100)
    expect(exitMs).toBeLessThan(500) // killed, not left to finish its run
    expect(events).toContainEqual({
      worker: 1,
      type: 'exited',
      code: null,
      signal: 'SIGKILL',
      expected: true,
    })
    expect(events.filter((e) => e.type === 'ended' && e.worker === 1)).toHaveLength(1) // the warm-up only
    expect(events.filter((e) => e.type === 'started' && e.worker === 2)).toHaveLength(1)
    expect(alive(pidOf(events, 2))).toBe(true)
  })

  it('kills at most one aborted run per worker in 10 s: past that, the run finishes unanswered in its process', async () => {
    const engine = await start({ workers: 1 })
    const abortOnStart = (stop: AbortController) => {
      onEvent = (e) => {
        if (e.type === 'started') setTimeout(() => stop.abort(), 20)
      }
    }
    const first = new AbortController()
    abortOnStart(first)
    await expect(engine.run({ cid: slowCid, inputs: square(1536) }, first.signal)).rejects.toMatchObject({
      name: 'AbortError',
    })
    await vi.waitFor(() => expect(events.some((e) => ended(e, 1))).toBe(true), { timeout: 2000 })
    // A second abort at once, as a requester cancelling over and over would: no second kill.
    const second = new AbortController()
    abortOnStart(second)
    await expect(engine.run({ cid: slowCid, inputs: square(1536) }, second.signal)).rejects.toMatchObject({
      name: 'AbortError',
    })
    onEvent = () => {}
    const pid = pidOf(events, 2)
    expect(alive(pid)).toBe(true)
    // The next run waits for the abandoned one, on the same process: no fork, and its answer is its own.
    const next = await engine.run({ cid: slowCid, inputs: square(8) })
    expect(next.outputs.y!.dims).toEqual([8, 8])
    expect(events.filter((e) => e.type === 'spawned')).toHaveLength(2)
    expect(events.some((e) => ended(e, 2))).toBe(false)
    expect(events.filter((e) => e.type === 'ended' && e.worker === 2)).toHaveLength(2) // abandoned, next
  })

  it('kills a run handed back (the contributor paused) past the kill budget: the pause frees the core', async () => {
    const engine = await start({ workers: 1 })
    const abortOnStart = (stop: AbortController, reason?: Error) => {
      onEvent = (e) => {
        if (e.type === 'started') setTimeout(() => stop.abort(reason), 20)
      }
    }
    const first = new AbortController()
    abortOnStart(first) // a requester's cancel: the budget's one kill
    await expect(engine.run({ cid: slowCid, inputs: square(1536) }, first.signal)).rejects.toThrow()
    await vi.waitFor(() => expect(events.some((e) => ended(e, 1))).toBe(true), { timeout: 2000 })
    const second = new AbortController()
    abortOnStart(second, new JobHandedBackError('the contributor paused'))
    await expect(engine.run({ cid: slowCid, inputs: square(1536) }, second.signal)).rejects.toThrow()
    onEvent = () => {}
    // Killed, not left to finish: its process is gone within 2 s (the run alone takes longer).
    const pid = pidOf(events, 2)
    await vi.waitFor(() => expect(alive(pid)).toBe(false), { timeout: 2000 })
    const next = await engine.run({ cid: slowCid, inputs: square(8) })
    expect([next.outputs.y!.dims, events.filter((e) => e.type === 'spawned').length]).toEqual([[8, 8], 3])
  })

  it('runs a model evicted and loaded again while an abandoned run held its process', async () => {
    const engine = await start({ workers: 1 })
    const abortOnStart = (stop: AbortController) => {
      onEvent = (e) => {
        if (e.type === 'started') setTimeout(() => stop.abort(), 20)
      }
    }
    for (const n of [768, 1024]) {
      const stop = new AbortController()
      abortOnStart(stop)
      await expect(engine.run({ cid: slowCid, inputs: square(n) }, stop.signal)).rejects.toMatchObject({
        name: 'AbortError',
      })
    }
    onEvent = () => {}
    // The second run is abandoned (past the kill budget): its caller is gone, so the model is evicted.
    await engine.evict(slowCid)
    await engine.loadModel(slowCid, slow)
    const { outputs } = await engine.run({ cid: slowCid, inputs: square(8) })
    expect(outputs.y!.dims).toEqual([8, 8])
  })

  it('ignores SIGINT and SIGTERM, which a terminal or systemd sends the whole group: the parent ends it', async () => {
    const engine = await start({ workers: 1 })
    await engine.run({ cid: slowCid, inputs: square(8) })
    const pid = pidOf(events, 1)
    process.kill(pid, 'SIGINT')
    process.kill(pid, 'SIGTERM')
    await new Promise((r) => setTimeout(r, 300))
    expect(alive(pid)).toBe(true)
    expect((await engine.run({ cid: slowCid, inputs: square(8) })).outputs.y!.dims).toEqual([8, 8])
    expect(events.some((e) => ended(e, 1))).toBe(false)
  })

  it('fails the run of a crashed process with InferenceError naming the cause, and replaces it', async () => {
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

  it('runs a model on the process that has its session, and sends its bytes to a process only once', async () => {
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

  it('close kills a busy process at once, lets an idle one release its sessions, and leaves none alive', async () => {
    const engine = await start({ workers: 2 })
    await Promise.all([1, 2].map(() => engine.run({ cid: slowCid, inputs: square(8) })))
    const pids = [pidOf(events, 1), pidOf(events, 2)]
    events = []
    onEvent = (e) => {
      if (e.type === 'started') engine.close()
    }
    const t0 = performance.now()
    await expect(engine.run({ cid: slowCid, inputs: square(1536) })).rejects.toMatchObject({
      name: 'AbortError',
      message: 'node engine closed',
    })
    await engine.closed()
    const closedMs = performance.now() - t0
    console.log(`close during a run: every process gone ${closedMs.toFixed(0)} ms after the run's start`)
    expect(closedMs).toBeLessThan(1000) // the ~1 s run did not go on
    const busy = events.find((e) => e.type === 'started')!.worker
    const idle = 3 - busy
    const ends = events.filter((e) => e.type === 'ended' || e.type === 'released' || e.type === 'exited')
    expect(ends.filter((e) => e.worker === busy)).toEqual([
      { worker: busy, type: 'exited', code: null, signal: 'SIGKILL', expected: true },
    ])
    expect(ends.filter((e) => e.worker === idle).map((e) => e.type)).toEqual(['released', 'exited'])
    expect(events).toContainEqual({ worker: idle, type: 'exited', code: 0, expected: true })
    expect(pids.map(alive)).toEqual([false, false])
    await expect(engine.run({ cid: slowCid, inputs: square(8) })).rejects.toMatchObject({
      name: 'InferenceError',
    })
  })
})

describe('ORT processes and the process that started them', () => {
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href
  const url = (path: string) => new URL(path, import.meta.url).href

  /** `code` (ESM, under tsx) in a node process of its own. */
  const node = (code: string) =>
    spawn(process.execPath, ['--import', tsx, '--input-type=module', '-e', code], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
  /** Runs `code` to its end: its output and exit code. */
  const script = async (code: string) => {
    const proc = node(code)
    let out = ''
    proc.stdout.on('data', (d) => {
      out += d
    })
    const exit = await new Promise((done) => proc.once('exit', (code) => done(code)))
    return { out, exit }
  }

  it('lets a script end: closed() once its processes exit, an idle one unclosed with it', async () => {
    const { out, exit } = await script(`
      const { createNodeEngine } = await import(${JSON.stringify(url('../../node/engine.ts'))})
      const { matmulChain } = await import(${JSON.stringify(url('../helpers/onnx-graph.ts'))})
      const { modelCid } = await import(${JSON.stringify(url('../../src/shared/cid.ts'))})
      const bytes = matmulChain(2)
      const cid = (await modelCid(bytes)).toString()
      const x = { dtype: 'float32', dims: [2, 2], data: new Float32Array(4).fill(0.5) }
      const pids = []
      for (const close of [true, false]) {
        const onEvent = (e) => e.type === 'spawned' && pids.push(e.pid)
        const engine = createNodeEngine({ threads: 1, onEvent })
        await engine.loadModel(cid, bytes)
        await engine.run({ cid, inputs: { x } })
        if (close) {
          engine.close()
          await engine.closed()
        }
      }
      console.log(JSON.stringify(pids))`)
    expect(exit).toBe(0) // not 13: closed() kept it alive until it resolved
    const pids = JSON.parse(out) as number[]
    expect(pids).toHaveLength(2)
    await vi.waitFor(() => expect(pids.map(alive)).toEqual([false, false]), { timeout: 2000 })
  })

  it('exits when its parent closes the IPC channel, while it loads or once it has run', async () => {
    for (const when of ['loading', 'ran']) {
      const child = forkWorker({ threads: 1 })
      const exit = new Promise((done) => child.once('exit', (code, signal) => done({ code, signal })))
      await new Promise((spawned) => child.once('spawn', spawned))
      if (when === 'ran') {
        const x = { dtype: 'float32', dims: [2, 2], data: new Float32Array(4) } as const
        child.send({ type: 'run', id: 1, cid: 'c', release: [], bytes: matmulChain(1), inputs: { x } })
        await new Promise((done) =>
          child.on('message', (m: { type: string }) => m.type === 'done' && done(m)),
        )
      }
      child.disconnect()
      await expect(exit).resolves.toEqual({ code: 0, signal: null })
      expect(alive(child.pid!)).toBe(false)
    }
  })

  it('kills itself inside a run once its parent is killed', async () => {
    // A parent that starts a ~10 s run in its ORT process and prints that process's pid.
    const parent = `
      const { forkWorker } = await import(${JSON.stringify(url('../../node/engine-pool.ts'))})
      const { matmulChain } = await import(${JSON.stringify(url('../helpers/onnx-graph.ts'))})
      const n = 3072
      const child = forkWorker({ threads: 1 })
      child.on('message', (m) => m.type === 'started' && console.log(child.pid))
      const x = { dtype: 'float32', dims: [n, n], data: new Float32Array(n * n).fill(1 / n) }
      child.send({ type: 'run', id: 1, cid: 'c', release: [], bytes: matmulChain(16), inputs: { x } })`
    const proc = node(parent)
    const pid = await new Promise<number>((found) => proc.stdout.once('data', (d) => found(Number(`${d}`))))
    try {
      expect(alive(pid)).toBe(true)
      const t0 = performance.now()
      proc.kill('SIGKILL')
      await vi.waitFor(() => expect(alive(pid)).toBe(false), { timeout: 3000, interval: 20 })
      console.log(`ORT process gone ${(performance.now() - t0).toFixed(0)} ms after its parent was killed`)
    } finally {
      if (alive(pid)) process.kill(pid, 'SIGKILL')
    }
  })
})
