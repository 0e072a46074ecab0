/**
 * `npm run bench -- --quick` as a smoke test: the bench builds, drives real tabs and reports every
 * figure it was asked for. Figures are never judged here (timing on a shared CI machine is noise).
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'

const ROOT = resolve(import.meta.dirname, '../..')
const tmp = mkdtempSync(join(tmpdir(), 'pc-bench-smoke-'))
afterAll(() => rmSync(tmp, { recursive: true, force: true }))

function runBench(args: string[]): Promise<{ code: number | null; log: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'bench/run.ts', ...args], {
      cwd: ROOT,
      env: { ...process.env, PC_DIST: join(tmp, 'dist') },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let log = ''
    child.stdout.on('data', (d) => (log += d))
    child.stderr.on('data', (d) => (log += d))
    child.on('exit', (code) => done({ code, log }))
  })
}

describe('npm run bench -- --quick', () => {
  it('measures dispatch and throughput on real tabs and writes its results', async () => {
    const out = join(tmp, 'results')
    const { code, log } = await runBench(['--quick', '--only=dispatch,throughput', `--out=${out}`])
    expect(code, log.slice(-3000)).toBe(0)
    const files = readdirSync(out).filter((f) => f.endsWith('.json'))
    expect(files).toHaveLength(1)
    const r = JSON.parse(readFileSync(join(out, files[0]!), 'utf8'))
    expect(r.meta.errors).toBeUndefined()
    const models = r.dispatch.map((d: { model: string }) => d.model)
    expect(models).toEqual(['bench-1ms', 'bench-10ms', 'mlp-m'])
    for (const d of r.dispatch) {
      expect(d.local.n).toBeGreaterThan(0)
      expect(d.remote.p50).toBeGreaterThan(0)
      expect(d.remoteRun.p50).toBeGreaterThan(0) // the contributor really ran the model
      expect(d.unpersisted.n).toBe(d.remote.n) // the persist: false arm ran as often
    }
    // Measured after the tabs' background compilation: the bench waited, and says how long.
    expect(r.warmUp.waitedMs).toBeGreaterThan(0)
    expect(r.warmUp.cpuMs).toBeGreaterThan(0)
    expect(r.throughput.settled['bench-100ms'].waitedMs).toBeGreaterThan(0)
    expect(r.idle.cores).toBeGreaterThan(0) // the idle swarm's CPU was read from /proc
    // The native reference ran as two onnxruntime-node processes (timing itself is not judged).
    expect(r.throughput.native['bench-100ms'].msPerRun[2]).toBeGreaterThan(0)
    type Row = { contributors: number; persist?: false; jobsPerS: number; byWorker: number[] }
    const two = r.throughput.rows.find((t: Row) => t.contributors === 2 && t.persist !== false)
    expect(two.jobsPerS).toBeGreaterThan(0)
    expect(two.byWorker).toHaveLength(2) // both contributors took work
    // Per-thread CPU was read, the requester's browser told apart from the contributors'.
    const threads = Object.keys(two.cpuMsPerJobByThread)
    expect(threads).toContain('renderer/DedicatedWorker') // the contributors' inference workers
    expect(threads.filter((t) => t.startsWith('requester ')).length).toBeGreaterThan(0)
    // The same batch with persist: false, for what the requester's IndexedDB writes cost.
    const off = r.throughput.rows.find((t: Row) => t.contributors === 2 && t.persist === false)
    expect(off.jobsPerS).toBeGreaterThan(0)
    expect(off.byWorker).toHaveLength(2)
    // The raw-channel reference ran on 1 and 2 contributors, its inference in their workers.
    const raw = r.throughput.raw
    expect(raw.model).toBe('bench-100ms')
    expect(raw.rows.map((x: { contributors: number }) => x.contributors)).toEqual([1, 2])
    expect(raw.rows[1].jobsPerS).toBeGreaterThan(0)
    expect(raw.rows[1].byWorker).toHaveLength(2)
    for (const n of raw.rows[1].byWorker) expect(n).toBeGreaterThan(0) // both contributors ran jobs
    expect(log).toContain('## Targets')
  }, 400_000)
})
