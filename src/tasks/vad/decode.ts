/** Browser audio decoding: any format the browser reads, resampled to 16 kHz mono by Web Audio. */
import { InvalidTensorError } from '../../shared/errors.ts'
import { SAMPLE_RATE, toMono } from './frames.ts'

export async function decodeAudio(bytes: ArrayBuffer): Promise<Float32Array> {
  // decodeAudioData resamples to its context's rate, so a 16 kHz offline context does the resampling.
  const ctx = new OfflineAudioContext(1, 1, SAMPLE_RATE)
  let buffer: AudioBuffer
  try {
    buffer = await ctx.decodeAudioData(bytes.slice(0))
  } catch (err) {
    throw new InvalidTensorError(`cannot decode audio: ${(err as Error).message}`)
  }
  const channels = Array.from({ length: buffer.numberOfChannels }, (_, c) => buffer.getChannelData(c))
  return toMono(channels)
}
