/**
 * Adaptive replication (after BOINC): a peer with a long streak of valid results gets a single
 * replica, except for random spot checks; a suspicious single result is replicated anyway.
 */
import type { TensorSpec } from '../models/catalog.ts'
import type { Reputation } from '../trust/reputation.ts'
import type { DispatchResult } from './quorum.ts'

export interface AdaptiveParams {
  /** Consecutive valid results before a peer may run jobs alone. */
  streakThreshold: number
  /** Probability that a trusted peer's job is still replicated. */
  spotCheckProbability: number
  /** A run faster than this fraction of the model's median run time is suspicious. */
  tooFastRatio: number
}

export const ADAPTIVE_DEFAULTS: AdaptiveParams = {
  streakThreshold: 10,
  spotCheckProbability: 0.1,
  tooFastRatio: 0.1,
}

export function createAdaptive(
  rep: Reputation,
  params = ADAPTIVE_DEFAULTS,
  random: () => number = Math.random,
) {
  const runTimes = new Map<string, number[]>() // model CID → recent verified run times (µs)

  return {
    params,
    /** Every invalid result on record doubles the streak a peer needs before it may run alone again. */
    singleReplicaOk(peer: string): boolean {
      const r = rep.get(peer)
      const needed = params.streakThreshold * 2 ** Math.min(r.invalid, 6)
      return r.streak >= needed && random() >= params.spotCheckProbability
    },

    /** Checks a result needs no second opinion to be doubted: shape, finiteness, implausible speed. */
    suspicious(result: DispatchResult, outputs?: TensorSpec[]): boolean {
      for (const spec of outputs ?? []) {
        const t = result.outputs[spec.name]
        if (!t || t.dtype !== spec.dtype) return true
        if (spec.dims.some((d, i) => d >= 0 && t.dims[i] !== d)) return true
      }
      for (const t of Object.values(result.outputs)) {
        if (t.data instanceof Float32Array && !t.data.every(Number.isFinite)) return true
      }
      const seen = runTimes.get(result.receipt.body.model.toString()) ?? []
      if (seen.length >= 5) {
        const median = [...seen].sort((a, b) => a - b)[seen.length >> 1]!
        if (result.receipt.body.timing.runUs < median * params.tooFastRatio) return true
      }
      return false
    },

    /** Remembers run times of verified results, to judge later single results. */
    observe(result: DispatchResult): void {
      const model = result.receipt.body.model.toString()
      const list = runTimes.get(model) ?? []
      list.push(result.receipt.body.timing.runUs)
      if (list.length > 50) list.shift()
      runTimes.set(model, list)
    },
  }
}

export type Adaptive = ReturnType<typeof createAdaptive>
