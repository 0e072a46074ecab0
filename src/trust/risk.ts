/**
 * Stated risk: the probability that a verified result is wrong, under the policy that verified it and
 * the reputation its agreeing workers had at that moment. The model (DESIGN.md, "Stated risk"):
 *
 * - A fraction `prior` of peers is dishonest. A dishonest peer returns a wrong result on a job with
 *   probability λ, and dishonest peers collude: on the jobs they lie about, they return the same
 *   wrong output, so agreement among them proves nothing.
 * - Honest peers are never wrong beyond the comparison rule (drift within tolerance is not an error).
 * - Each of a peer's results that was cross-checked by another peer and held is evidence: a dishonest
 *   peer survives a check with probability 1 − λ. A peer with an invalid result on record is taken
 *   as dishonest.
 * - λ is unknown and a clever liar picks it: the stated risk is the worst case over λ ∈ (0, 1].
 *
 * A result agreed by q workers is wrong only if all q are dishonest and lied on this job:
 * risk = max over λ of λ · Π P(dishonest | its checks, λ).
 */
import type { ReputationRecord } from '../store/schema.ts'

export interface RiskParams {
  /** The assumed share of dishonest peers in the swarm. */
  prior: number
  /** Adaptive replication: valid results in a row before a peer may run alone (ADAPTIVE_DEFAULTS). */
  streakThreshold: number
  /** Adaptive replication: the share of a trusted peer's jobs still replicated. */
  spotCheckProbability: number
}

export const RISK_DEFAULTS: RiskParams = { prior: 0.1, streakThreshold: 10, spotCheckProbability: 0.1 }

/**
 * How many of a peer's valid results were cross-checked: counted since records keep it (`checked`).
 * For an older record, cautiously: its first `streakThreshold` results, then a
 * `spotCheckProbability` share of the rest (what adaptive replication would have checked).
 */
export function checksOf(
  r: Pick<ReputationRecord, 'valid' | 'checked'>,
  p: RiskParams = RISK_DEFAULTS,
): number {
  if (r.checked !== undefined) return Math.min(r.checked, r.valid)
  if (r.valid <= p.streakThreshold) return r.valid
  return p.streakThreshold + p.spotCheckProbability * (r.valid - p.streakThreshold)
}

/** P(dishonest | the peer passed `checks` checks), for a liar that lies with probability λ. */
function posterior(checks: number, lambda: number, prior: number): number {
  const survive = prior * (1 - lambda) ** checks
  return survive / (survive + (1 - prior))
}

/** λ from 1e-6 to 1, log-spaced: fine enough for a worst case read to two significant digits. */
const LAMBDAS = Array.from({ length: 241 }, (_, i) => 10 ** (-6 + i / 40))

/**
 * The stated risk of a result that `workers` (their records before this job counted) agreed on.
 * Only cross-checked results count (`checksOf`): a peer that only ever ran jobs alone has proven
 * nothing to this requester.
 */
export function statedRisk(
  workers: Pick<ReputationRecord, 'valid' | 'invalid' | 'checked'>[],
  p: RiskParams = RISK_DEFAULTS,
): number {
  return riskOfChecks(
    workers.map((w) => (w.invalid > 0 ? -1 : checksOf(w, p))),
    p.prior,
  )
}

/** The worst case over λ for agreeing peers with these many checks each (-1: known dishonest). */
export function riskOfChecks(checks: number[], prior = RISK_DEFAULTS.prior): number {
  if (checks.length === 0) return 1
  let worst = 0
  for (const lambda of LAMBDAS) {
    let r = lambda
    for (const c of checks) r *= c < 0 ? 1 : posterior(c, lambda, prior)
    if (r > worst) worst = r
  }
  return worst
}

/** A risk in words for people: "1 in 270 (0.37 %)"; 0 where this peer's own worker agreed. */
export function riskWords(risk: number): string {
  if (!(risk > 0)) return '0 (this peer computed it too)'
  if (risk >= 1) return 'no claim'
  const pct = risk * 100
  const p = pct >= 1 ? pct.toFixed(1) : pct.toPrecision(2)
  return `1 in ${Math.round(1 / risk).toLocaleString('en')} (${p} %)`
}
