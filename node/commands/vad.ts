/**
 * `peer-compute vad <audio…>`: where WAV files hold speech, found by Silero VAD v5 on contributors
 * (src/tasks/vad/pipeline.ts): 16 kHz mono audio cut into chunks that run as parallel jobs.
 */
import { writeFile } from 'node:fs/promises'
import { InvalidTensorError } from '../../src/shared/errors.ts'
import { peerSubmit } from '../../src/tasks/peer-tasks.ts'
import { vad as runVad } from '../../src/tasks/vad/pipeline.ts'
import { wavTo16k } from '../../src/tasks/vad/wav.ts'
import { PEER_HELP, peerOptions } from '../args.ts'
import { readBounded } from '../decode-image.ts'
import { createNodePeer } from '../peer.ts'
import { settledConcurrency, taskArgs } from '../tasks.ts'
import { POLICY_HELP, watchSwarm } from './submit.ts'

export const VAD_HELP = `peer-compute vad <audio.wav…> [flags]
Finds speech in WAV files (PCM or 32-bit float, any rate, any channels; up to 512 MiB each) with
Silero VAD v5 on contributors, and prints each file's speech segments in seconds.

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

export async function vad(argv: string[], say: (line: string) => void): Promise<number> {
  const args = taskArgs(argv, VAD_HELP, say, 'vad takes one or more WAV files: peer-compute vad <audio…>')
  if (!args) return 0
  const { values, files, policy } = args
  // Every file decodes before the swarm is joined; each is decoded again when its turn comes.
  for (const f of files) await readAudio(f)
  const peer = await createNodePeer(await peerOptions(values))
  if (values.verbose) watchSwarm(peer, say)
  const results: VadFileResult[] = []
  try {
    const concurrency = await settledConcurrency(peer)
    const submit = peerSubmit(peer, { policy })
    for (const file of files) {
      const r = await runVad(await readAudio(file), { submit, concurrency })
      const segments = r.segments.map((s) => ({ start: round3(s.start), end: round3(s.end) }))
      results.push({ file, segments })
      if (values.json) continue
      if (files.length > 1) say(`==> ${file} <==`)
      if (segments.length === 0) say(`no speech in ${r.seconds.toFixed(2)} s`)
      for (const s of segments) say(`${s.start.toFixed(2)}–${s.end.toFixed(2)} s`)
    }
  } finally {
    await peer.stop()
  }
  const json = JSON.stringify(results)
  if (values.out) await writeFile(values.out, `${json}\n`)
  if (values.json) say(json)
  return 0
}
