/**
 * Deterministic, seeded MLP weights shared by the model generator, tests and benchmarks.
 * Same spec → same weights on every platform (mulberry32 + Math.fround). No DOM or Node globals.
 */

export interface MlpSpec {
  seed: number
  /** Layer widths, input first: [16, 32, 8] is 16→32 (ReLU) →8. */
  layers: number[]
  /** Fixed batch dimension of the generated graph's input. */
  batch: number
}

export interface MlpLayer {
  /** in×out, row-major: W[i * out + j]. */
  W: Float32Array
  b: Float32Array
}

/** mulberry32: tiny, fast, good-enough PRNG returning floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Uniform weights with variance 2/in (He-style), so activations stay O(1) through ReLU layers. */
export function mlpWeights(spec: MlpSpec): MlpLayer[] {
  const rand = mulberry32(spec.seed)
  const out: MlpLayer[] = []
  for (let l = 0; l + 1 < spec.layers.length; l++) {
    const nIn = spec.layers[l]!
    const nOut = spec.layers[l + 1]!
    const scale = Math.sqrt(6 / nIn)
    const W = new Float32Array(nIn * nOut)
    for (let k = 0; k < W.length; k++) W[k] = (rand() * 2 - 1) * scale
    const b = new Float32Array(nOut)
    for (let k = 0; k < b.length; k++) b[k] = (rand() * 2 - 1) * 0.1
    out.push({ W, b })
  }
  return out
}

/** A deterministic input for `spec`: batch×in values in [-1, 1). */
export function mlpInput(spec: MlpSpec, seed = spec.seed + 1): Float32Array {
  const rand = mulberry32(seed)
  const x = new Float32Array(spec.batch * spec.layers[0]!)
  for (let k = 0; k < x.length; k++) x[k] = rand() * 2 - 1
  return x
}

/** Plain-JS reference forward pass (float64 accumulation): ReLU between layers, none on the last. */
export function mlpForward(spec: MlpSpec, layers: MlpLayer[], x: Float32Array): Float32Array {
  let h = x
  let width = spec.layers[0]!
  layers.forEach(({ W, b }, l) => {
    const nOut = b.length
    const next = new Float32Array(spec.batch * nOut)
    const acc = new Float64Array(nOut)
    for (let r = 0; r < spec.batch; r++) {
      for (let j = 0; j < nOut; j++) acc[j] = b[j]!
      for (let i = 0; i < width; i++) {
        const v = h[r * width + i]!
        if (v === 0) continue
        const row = i * nOut
        for (let j = 0; j < nOut; j++) acc[j]! += v * W[row + j]!
      }
      const last = l === layers.length - 1
      for (let j = 0; j < nOut; j++) next[r * nOut + j] = last ? acc[j]! : Math.max(0, acc[j]!)
    }
    h = next
    width = nOut
  })
  return h
}
