/** espeak-ng for voice tests: finds or installs it (Debian package), synthesizes speech, writes WAV. */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Pcm, parseWav } from '../../src/tasks/vad/wav.ts'
import { findOrInstall } from './debian-tool.ts'

export type { Pcm }

/** ESPEAK_PATH or /usr/bin/espeak-ng; as root, installs Debian's espeak-ng; otherwise throws. */
export const findEspeak = (): string =>
  findOrInstall({ env: 'ESPEAK_PATH', path: '/usr/bin/espeak-ng', pkg: 'espeak-ng', label: 'espeak-ng' })

/** 16-bit PCM mono WAV. */
export function writeWav({ rate, samples }: Pcm): Uint8Array {
  const out = new Uint8Array(44 + samples.length * 2)
  const dv = new DataView(out.buffer)
  const str = (o: number, s: string) => {
    for (let i = 0; i < s.length; i++) dv.setUint8(o + i, s.charCodeAt(i))
  }
  str(0, 'RIFF')
  dv.setUint32(4, 36 + samples.length * 2, true)
  str(8, 'WAVEfmt ')
  dv.setUint32(16, 16, true)
  dv.setUint16(20, 1, true) // PCM
  dv.setUint16(22, 1, true) // mono
  dv.setUint32(24, rate, true)
  dv.setUint32(28, rate * 2, true)
  dv.setUint16(32, 2, true)
  dv.setUint16(34, 16, true)
  str(36, 'data')
  dv.setUint32(40, samples.length * 2, true)
  for (let i = 0; i < samples.length; i++)
    dv.setInt16(44 + i * 2, Math.round(Math.max(-1, Math.min(1, samples[i]!)) * 32767), true)
  return out
}

/** Speaks `text` with espeak-ng (English, 150 wpm): mono PCM at espeak's rate (22050 Hz). */
export function speak(text: string, voice = 'en'): Pcm {
  const dir = mkdtempSync(join(tmpdir(), 'peer-compute-espeak-'))
  try {
    const file = join(dir, 'speech.wav')
    execFileSync(findEspeak(), ['-v', voice, '-s', '150', '-w', file, text])
    return parseWav(new Uint8Array(readFileSync(file)))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Silence (faint seeded noise) of `seconds` with each clip placed at its start time. */
export function compose(rate: number, seconds: number, clips: { at: number; pcm: Pcm }[]): Pcm {
  const samples = new Float32Array(Math.round(seconds * rate))
  let seed = 7
  for (let i = 0; i < samples.length; i++) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31
    samples[i] = (seed / 2 ** 31 - 0.5) * 2e-3 // about -60 dBFS
  }
  for (const { at, pcm } of clips) {
    if (pcm.rate !== rate) throw new Error(`clip rate ${pcm.rate} differs from ${rate}`)
    samples.set(pcm.samples.subarray(0, samples.length - Math.round(at * rate)), Math.round(at * rate))
  }
  return { rate, samples }
}
