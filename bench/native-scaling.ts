/**
 * The physical reference for throughput: k onnxruntime-node processes, one thread each, running the
 * same model at the same time on this machine. Their speedup over one process is what the cores
 * allow; the swarm's speedup is measured against it.
 *
 * Run as a child (`--native-child <model file> <inputs JSON> <runs>`), it warms a session, says
 * 'ready', waits for 'go', and answers its mean ms per run.
 */
import { fork } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { type InputSpec, seededInputs } from './inputs.ts'

export interface NativeScaling {
  /** Mean ms per run of the slowest process, per process count. */
  msPerRun: Record<number, number>
  /** Runs/s of k processes over runs/s of one. */
  speedup: Record<number, number>
}

interface CatalogEntry {
  name: string
  file: string
  inputs: InputSpec[]
}

async function child(file: string, inputs: InputSpec[], runs: number) {
  const ort = await import('onnxruntime-node')
  const session = await ort.InferenceSession.create(readFileSync(file), {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
  })
  const feeds = Object.fromEntries(
    Object.entries(seededInputs(inputs, 1)).map(([k, t]) => [k, new ort.Tensor('float32', t.data, t.dims)]),
  )
  for (let i = 0; i < 3; i++) await session.run(feeds)
  process.send?.('ready')
  await new Promise((r) => process.once('message', r))
  const t0 = performance.now()
  for (let i = 0; i < runs; i++) await session.run(feeds)
  process.send?.((performance.now() - t0) / runs)
  process.disconnect?.()
}

/** k processes at once for each k in `counts`; the model is looked up in the built bench catalog. */
export async function nativeScaling(
  dist: string,
  model: string,
  counts: number[],
  runs: number,
): Promise<NativeScaling> {
  const catalog = JSON.parse(readFileSync(resolve(dist, 'bench/catalog.json'), 'utf8')) as CatalogEntry[]
  const e = catalog.find((c) => c.name === model)
  if (!e) throw new Error(`native scaling: ${model} is not in the bench catalog`)
  const args = ['--native-child', resolve(dist, e.file), JSON.stringify(e.inputs), String(runs)]
  const msPerRun: Record<number, number> = {}
  for (const k of counts) {
    const kids = Array.from({ length: k }, () => fork(import.meta.filename, args, { stdio: 'inherit' }))
    const next = () =>
      Promise.all(
        kids.map(
          (c) =>
            new Promise<unknown>((ok, fail) => {
              c.once('message', ok)
              c.once('exit', (code) => fail(new Error(`native scaling child exited with ${code}`)))
            }),
        ),
      )
    try {
      await next() // every session warm
      const done = next()
      for (const c of kids) c.send('go')
      msPerRun[k] = Math.max(...((await done) as number[]))
    } finally {
      for (const c of kids) c.kill()
    }
  }
  const one = msPerRun[1]
  if (one == null) throw new Error('native scaling: counts must include 1')
  const speedup = Object.fromEntries(counts.map((k) => [k, (one * k) / msPerRun[k]!]))
  return { msPerRun, speedup }
}

const at = process.argv.indexOf('--native-child')
if (at >= 0) {
  const [file, inputs, runs] = process.argv.slice(at + 1)
  await child(file!, JSON.parse(inputs!) as InputSpec[], Number(runs))
}
