/**
 * Sample-rate conversion for audio that Web Audio does not decode for us (Node): polyphase
 * windowed-sinc (Blackman window), with the cutoff below the lower of the two Nyquist rates so that
 * downsampling does not fold high frequencies back into the band.
 *   const audio16k = resample(samples, 44_100, 16_000)
 */

/** Sinc zero crossings kept on each side of a tap: longer is sharper and slower. */
const ZERO_CROSSINGS = 16
/** Cutoff as a fraction of the lower Nyquist rate: the transition band lies below it. */
const ROLLOFF = 0.9
/** An irregular ratio (e.g. 44_101 → 16_000) rounds positions to 1/MAX_PHASES of a sample. */
const MAX_PHASES = 1024

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b))

/** `x` at `from` Hz as samples at `to` Hz (whole rates); the same array when they are equal. */
export function resample(x: Float32Array, from: number, to: number): Float32Array {
  if (!(Number.isSafeInteger(from) && Number.isSafeInteger(to) && from > 0 && to > 0))
    throw new RangeError(`sample rates must be whole and positive, got ${from} → ${to}`)
  if (from === to) return x
  const g = gcd(from, to)
  const up = to / g
  const down = from / g
  const exact = up <= MAX_PHASES
  const phases = exact ? up : MAX_PHASES
  const fc = 0.5 * Math.min(1, to / from) * ROLLOFF // cycles per input sample
  const half = Math.ceil(ZERO_CROSSINGS / (2 * fc))
  const taps = 2 * half
  // table[p][k]: weight of input sample j0 - half + 1 + k for an output at j0 + p / phases.
  const table = new Float32Array(phases * taps)
  for (let p = 0; p < phases; p++) {
    let sum = 0
    for (let k = 0; k < taps; k++) {
      const d = k - half + 1 - p / phases
      const a = 2 * Math.PI * fc * d
      const sinc = d === 0 ? 1 : Math.sin(a) / a
      const w = 0.42 + 0.5 * Math.cos((Math.PI * d) / half) + 0.08 * Math.cos((2 * Math.PI * d) / half)
      table[p * taps + k] = sinc * w
      sum += sinc * w
    }
    for (let k = 0; k < taps; k++) table[p * taps + k]! /= sum // unit gain at DC for every phase
  }
  const out = new Float32Array(Math.round((x.length * to) / from))
  for (let i = 0; i < out.length; i++) {
    let j0: number
    let p: number
    if (exact) {
      p = (i * down) % up
      j0 = (i * down - p) / up
    } else {
      const pos = (i * from) / to
      j0 = Math.floor(pos)
      p = Math.round((pos - j0) * phases)
      if (p === phases) {
        j0++
        p = 0
      }
    }
    const first = j0 - half + 1
    const row = p * taps
    let acc = 0
    if (first >= 0 && first + taps <= x.length) {
      for (let k = 0; k < taps; k++) acc += x[first + k]! * table[row + k]!
    } else {
      for (let k = Math.max(0, -first); k < taps && first + k < x.length; k++)
        acc += x[first + k]! * table[row + k]!
    }
    out[i] = acc
  }
  return out
}
