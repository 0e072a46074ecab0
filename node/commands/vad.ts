/**
 * `peer-compute vad <audio…>`: where WAV files hold speech, found by Silero VAD v5 on contributors
 * (src/tasks/vad/pipeline.ts): 16 kHz mono audio cut into chunks that run as parallel jobs, several
 * files at once under one cap on jobs in flight.
 */
import { writeFile } from 'node:fs/promises'
import { InvalidTensorError } from '../../src/shared/errors.ts'
import type { Submit } from '../../src/tasks/fanout.ts'
import { peerSubmit } from '../../src/tasks/peer-tasks.ts'
import { vad as runVad } from '../../src/tasks/vad/pipeline.ts'
import { wavTo16k } from '../../src/tasks/vad/wav.ts'
import { PEER_HELP, peerOptions } from '../args.ts'
import { readBounded } from '../decode-image.ts'
import { createLimit, orderedRuns } from '../limit.ts'
import { createNodePeer } from '../peer.ts'
import { settledConcurrency, taskArgs } from '../tasks.ts'
import { POLICY_HELP, watchSwarm } from './submit.ts'

export const VAD_HELP = `peer-compute vad <audio.wav…> [flags]
Finds speech in WAV files (PCM or 32-bit float, any rate, any channels; up to 512 MiB each) with
Silero VAD v5 on contributors, and prints each file's speech segments in seconds. Several files run at
once, sharing the contributors; output keeps the files' order.

  --json                    print [{file, segments: [{start, end}]}] (seconds)
  --out <file>              write that JSON to <file>
  -v, --verbose             say when contributors are seen and linked
${POLICY_HELP}
${PEER_HELP}`

/** Largest file read: 46 min of 48 kHz stereo 16-bit, 4.6 h of 16 kHz mono; decoding holds ~2× that. */
const MAX_AUDIO_BYTES = 512 * 1024 ** 2

export interface VadFileResult {
  file: string
  segments: { start: number; end: number }[]
}

const round3 = (s: number) => Math.round(s * 1000) / 1000

/** 16 kHz mono samples of a WAV file; its name in any error. */
async function readAudio(file: string): Promise<Float32Array> {
  const bytes = await readBounded(file, MAX_AUDIO_BYTES)
  try {
    return wavTo16k(bytes)
  } catch (err) {
    throw new InvalidTensorError(`${file}: ${(err as Error).message}`)
  }
}

export interface VadFilesOptions {
  submit: Submit
  /** Jobs in flight over all files together. */
  concurrency: number
  /** A file's 16 kHz samples. */
  read: (file: string) => Promise<Float32Array>
  /** Each file's sample count (from the check before the swarm is joined), to budget memory. */
  samples: readonly number[]
  /** Bytes of samples of the files in progress (default MAX_AUDIO_BYTES); a larger file runs alone. */
  budget?: number
  /** A file's result, in the files' order, once it and every file before it are done. */
  onFile?: (result: VadFileResult, seconds: number) => void
}

/**
 * Every file's segments, several files at a time: one shared limit keeps `concurrency` jobs in flight in
 * all, so short files fill the slots a lone file's few chunks would leave idle. Fails as a loop would.
 */
export async function vadFiles(files: readonly string[], o: VadFilesOptions): Promise<VadFileResult[]> {
  const limit = createLimit(o.concurrency)
  const submit: Submit = (model, inputs, opts) => limit(() => o.submit(model, inputs, opts), opts?.signal)
  // One file read and decoded at a time, as before: WAV bytes and decoding buffers of one file at most.
  const decode = createLimit(1)
  const seconds: number[] = []
  return orderedRuns(
    files,
    async (file, i, signal) => {
      // Each pipeline may use every slot when alone; its lanes past the limit wait holding one chunk's
      // frames each, at most about its own audio again.
      const r = await runVad(await decode(() => o.read(file), signal), {
        submit,
        concurrency: o.concurrency,
        signal,
      })
      seconds[i] = r.seconds
      return { file, segments: r.segments.map((s) => ({ start: round3(s.start), end: round3(s.end) })) }
    },
    {
      // More files than job slots would only add waiting pipelines and open files.
      concurrency: o.concurrency,
      weight: (_, i) => (o.samples[i] ?? 0) * Float32Array.BYTES_PER_ELEMENT,
      capacity: o.budget ?? MAX_AUDIO_BYTES,
      onResult: (r, i) => o.onFile?.(r, seconds[i]!),
    },
  )
}

/** What `vad` prints for one file (the `==> file <==` header when there are several). */
export function fileLines(r: VadFileResult, seconds: number, many: boolean): string[] {
  const lines = many ? [`==> ${r.file} <==`] : []
  if (r.segments.length === 0) lines.push(`no speech in ${seconds.toFixed(2)} s`)
  for (const s of r.segments) lines.push(`${s.start.toFixed(2)}–${s.end.toFixed(2)} s`)
  return lines
}

export async function vad(argv: string[], say: (line: string) => void): Promise<number> {
  const args = taskArgs(argv, VAD_HELP, say, 'vad takes one or more WAV files: peer-compute vad <audio…>')
  if (!args) return 0
  const { values, files, policy } = args
  // Every file decodes before the swarm is joined (its length sizes the memory budget); each is decoded
  // again when its turn comes.
  const samples: number[] = []
  for (const f of files) samples.push((await readAudio(f)).length)
  const peer = await createNodePeer(await peerOptions(values))
  if (values.verbose) watchSwarm(peer, say)
  let results: VadFileResult[]
  try {
    results = await vadFiles(files, {
      submit: peerSubmit(peer, { policy }),
      concurrency: await settledConcurrency(peer),
      read: readAudio,
      samples,
      onFile: (r, seconds) => {
        if (!values.json) for (const line of fileLines(r, seconds, files.length > 1)) say(line)
      },
    })
  } finally {
    await peer.stop()
  }
  const json = JSON.stringify(results)
  if (values.out) await writeFile(values.out, `${json}\n`)
  if (values.json) say(json)
  return 0
}
