/**
 * `peer-compute vad` over many files (node/commands/vad.ts vadFiles): files overlap under one cap on
 * jobs in flight, within a memory budget, print in order, and fail as a one-at-a-time loop would.
 * A fake swarm holds every job until the test completes a "round": all jobs then in flight.
 */
import { describe, expect, it } from 'vitest'
import { fileLines, type VadFileResult, type VadFilesOptions, vadFiles } from '../../node/commands/vad.ts'
import { JobRejectedError } from '../../src/shared/errors.ts'
import type { Submit, SubmitResult } from '../../src/tasks/fanout.ts'
import { vad } from '../../src/tasks/vad/pipeline.ts'
import { wavTo16k } from '../../src/tasks/vad/wav.ts'

/** A 16 kHz mono 32-bit float WAV holding `value` throughout. */
function wav(seconds: number, value: number): Uint8Array {
  const n = seconds * 16_000
  const bytes = new Uint8Array(44 + n * 4)
  const dv = new DataView(bytes.buffer)
  const tag = (o: number, s: string) => {
    for (let i = 0; i < 4; i++) bytes[o + i] = s.charCodeAt(i)
  }
  tag(0, 'RIFF')
  dv.setUint32(4, 36 + n * 4, true)
  tag(8, 'WAVE')
  tag(12, 'fmt ')
  dv.setUint32(16, 16, true)
  dv.setUint16(20, 3, true) // IEEE float
  dv.setUint16(22, 1, true)
  dv.setUint32(24, 16_000, true)
  dv.setUint32(28, 64_000, true)
  dv.setUint16(32, 4, true)
  dv.setUint16(34, 32, true)
  tag(36, 'data')
  dv.setUint32(40, n * 4, true)
  for (let i = 0; i < n; i++) dv.setFloat32(44 + i * 4, value, true)
  return bytes
}

/** Files named `f0.wav`…, each `seconds[k]` long (30 s per job); file k's samples all equal (k + 1) / 16. */
function audioFiles(seconds: number[]) {
  const files = seconds.map((_, k) => `f${k}.wav`)
  const bytes = new Map(files.map((f, k) => [f, wav(seconds[k]!, (k + 1) / 16)]))
  const read = async (f: string) => wavTo16k(bytes.get(f)!)
  return { files, read, samples: seconds.map((s) => s * 16_000) }
}

interface Job {
  file: number
  frames: number
  done: (r: SubmitResult) => void
  fail: (err: Error) => void
}

/**
 * Jobs wait until `round()` completes all those in flight; `fails(file)` makes a file's jobs fail.
 * File 0 is speech throughout, the others silence.
 */
function fakeSwarm(fails: (file: number) => Error | undefined = () => undefined) {
  let jobs: Job[] = []
  const s = {
    inFlight: 0,
    maxInFlight: 0,
    rounds: 0,
    filesPerRound: [] as number[][],
    doneIn: new Map<number, number>(),
  }
  const submit: Submit = async (_model, inputs) => {
    const t = inputs.frames!
    const frames = t.dims[0]!
    s.inFlight++
    s.maxInFlight = Math.max(s.maxInFlight, s.inFlight)
    try {
      return await new Promise<SubmitResult>((done, fail) => {
        jobs.push({ file: Math.round((t.data as Float32Array)[64]! * 16) - 1, frames, done, fail })
      })
    } finally {
      s.inFlight--
    }
  }
  const idle = async () => {
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r))
  }
  /** Completes every job in flight once nothing more starts; rounds until `p` settles. */
  const drive = async <T>(p: Promise<T>): Promise<T> => {
    let settled = false
    const watched = p.finally(() => {
      settled = true
    })
    watched.catch(() => {})
    for (await idle(); !settled; await idle()) {
      if (jobs.length === 0) throw new Error('stalled: no job in flight and not finished')
      s.rounds++
      s.filesPerRound.push([...new Set(jobs.map((j) => j.file))].sort())
      const now = jobs
      jobs = []
      for (const j of now) {
        const err = fails(j.file)
        if (err) j.fail(err)
        else {
          const probs = new Float32Array(j.frames).fill(j.file === 0 ? 0.9 : 0.1)
          j.done({ outputs: { probs: { dtype: 'float32', dims: [j.frames], data: probs } } })
        }
        s.doneIn.set(j.file, s.rounds)
      }
    }
    return watched
  }
  return { submit, drive, s }
}

const run = (seconds: number[], o: Partial<VadFilesOptions> & { submit: Submit; concurrency: number }) => {
  const a = audioFiles(seconds)
  return vadFiles(a.files, { read: a.read, samples: a.samples, ...o })
}

describe('vad over many files', () => {
  it('short files overlap: fewer rounds than one file at a time, never more jobs than the limit', async () => {
    const seconds = [10, 10, 10, 10, 10, 10]
    const one = fakeSwarm()
    const a = audioFiles(seconds)
    await one.drive(
      (async () => {
        for (const f of a.files) await vad(await a.read(f), { submit: one.submit, concurrency: 4 })
      })(),
    )
    expect(one.s.rounds).toBe(6) // what the command did before: one file's single job at a time

    const many = fakeSwarm()
    const results = await many.drive(run(seconds, { submit: many.submit, concurrency: 4 }))
    expect(many.s.rounds).toBe(2)
    expect(many.s.maxInFlight).toBe(4)
    expect(results.map((r) => r.file)).toEqual(a.files)
  })

  it('the limit holds across files with many chunks each', async () => {
    const f = fakeSwarm()
    // 5 + 3 + 1 + 4 + 2 jobs of 30 s; each file alone could fill all 3 slots.
    await f.drive(run([150, 90, 10, 120, 60], { submit: f.submit, concurrency: 3 }))
    expect(f.s.maxInFlight).toBe(3)
    expect(f.s.rounds).toBe(5) // 15 jobs, 3 at a time, no slot left idle
  })

  it("prints each file once it and every file before it are done, in the files' order", async () => {
    const f = fakeSwarm()
    const printed: { lines: string[]; round: number }[] = []
    const onFile = (r: VadFileResult, seconds: number) =>
      printed.push({ lines: fileLines(r, seconds, true), round: f.s.rounds })
    // File 0 has 4 jobs over 2 slots; files 1 and 2 one each, done in the first round they get.
    const results = await f.drive(run([120, 10, 20], { submit: f.submit, concurrency: 2, onFile }))
    expect(f.s.doneIn.get(1)! < f.s.doneIn.get(0)!).toBe(true) // file 1 finished first…
    expect(printed.map((p) => p.lines[0])).toEqual(['==> f0.wav <==', '==> f1.wav <==', '==> f2.wav <=='])
    for (const [k, p] of printed.entries())
      expect(p.round).toBeGreaterThanOrEqual(
        Math.max(...[0, 1, 2].slice(0, k + 1).map((i) => f.s.doneIn.get(i)!)),
      )
    expect(printed[0]!.lines[1]).toMatch(/^0\.\d\d–1\d\d\.\d\d s$/) // speech throughout
    expect(printed.slice(1).map((p) => p.lines.slice(1))).toEqual([
      ['no speech in 10.00 s'],
      ['no speech in 20.00 s'],
    ])
    expect(results.map((r) => r.segments.length)).toEqual([1, 0, 0])
  })

  it('an error in file 2 of 3 is reported; file 1 still prints, file 3 does not', async () => {
    const f = fakeSwarm((file) => (file === 1 ? new JobRejectedError('f1 went wrong') : undefined))
    const printed: string[] = []
    const p = run([10, 10, 10], { submit: f.submit, concurrency: 4, onFile: (r) => printed.push(r.file) })
    await expect(f.drive(p)).rejects.toThrow('f1 went wrong')
    expect(printed).toEqual(['f0.wav'])
  })

  it('files in progress keep to the memory budget; a file over it runs alone', async () => {
    const f = fakeSwarm()
    const budget = 2 * 10 * 16_000 * 4 // two 10 s files of float samples
    await f.drive(run([10, 10, 10, 10, 10], { submit: f.submit, concurrency: 4, budget }))
    expect(f.s.filesPerRound).toEqual([[0, 1], [2, 3], [4]])

    const g = fakeSwarm()
    const a = audioFiles([10, 10, 10])
    const samples = [a.samples[0]!, budget, a.samples[2]!] // file 1 counts as 4 such files
    await g.drive(vadFiles(a.files, { read: a.read, samples, submit: g.submit, concurrency: 4, budget }))
    expect(g.s.filesPerRound).toEqual([[0], [1], [2]])
  })
})
