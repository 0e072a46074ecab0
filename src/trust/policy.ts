/** Verification policies: how many replicas, how many must agree, and what "agree" means. */
import { InvalidPolicyError } from '../shared/errors.ts'

export type CompareRule =
  /** Output CIDs must be identical (bit-exact; sound only within one homogeneous class). */
  | { kind: 'exact' }
  /** Every element within atol + rtol·|b| (numpy allclose); per-output overrides by name. */
  | {
      kind: 'tolerance'
      atol: number
      rtol: number
      perOutput?: Record<string, { atol: number; rtol: number }>
    }
  /** Same argmax along the last axis of each output (classification). */
  | { kind: 'argmax'; outputs?: string[] }
  /** Same set of top-k indices along the last axis. */
  | { kind: 'topk'; k: number; outputs?: string[] }

export interface VerificationPolicy {
  /** Replicas dispatched up front, 1–5. */
  redundancy: number
  /** Agreeing replicas needed to accept, 1–redundancy. */
  quorum: number
  compare: CompareRule
  /** Whole-job deadline in ms from submission. */
  deadlineMs: number
  /** Per-replica timeout in ms; a late replica is reissued elsewhere. */
  replicaTimeoutMs: number
  /** Most replicas ever dispatched, counting reissues and extra replicas after disagreement. */
  maxAttempts: number
  /** BOINC-style adaptive replication: trusted peers get one replica plus random spot checks. */
  adaptive: boolean
  /** Allow the requester's own node to compute one replica. */
  allowSelf: boolean
  /**
   * Settle a 1–1 disagreement by dispute (bisection and a referee) before buying more replicas,
   * where the requester can hold one (src/jobs/dispute.ts). Absent means yes.
   */
  dispute?: boolean
  /**
   * Ask contributors to run each job as its trace and keep it a while, so that a dispute needs no
   * second run (JobBody.trace): each job costs its traced run (one thread, no graph optimisation)
   * in place of the plain one. Default no.
   */
  traceJobs?: boolean
}

/** Defaults per task type. Cross-runtime float differences are ~1e-6, so float tasks use tolerance. */
export const TASK_POLICIES: Record<string, Partial<VerificationPolicy>> = {
  tensor: { compare: { kind: 'tolerance', atol: 1e-4, rtol: 1e-4 } },
  'ocr-det': { compare: { kind: 'tolerance', atol: 1e-3, rtol: 1e-3 } },
  'ocr-rec': { compare: { kind: 'argmax' } },
  vad: { compare: { kind: 'tolerance', atol: 1e-3, rtol: 1e-3 } },
  classification: { compare: { kind: 'topk', k: 5 } },
}

export const BASE_POLICY: VerificationPolicy = {
  redundancy: 2,
  quorum: 2,
  compare: { kind: 'tolerance', atol: 1e-4, rtol: 1e-4 },
  deadlineMs: 120_000,
  replicaTimeoutMs: 30_000,
  maxAttempts: 6,
  adaptive: true,
  allowSelf: false,
}

export function policyFor(
  task: string | undefined,
  overrides: Partial<VerificationPolicy> = {},
): VerificationPolicy {
  const p = { ...BASE_POLICY, ...(task ? TASK_POLICIES[task] : {}), ...overrides }
  if (overrides.redundancy != null && overrides.quorum == null) p.quorum = Math.min(p.quorum, p.redundancy)
  return checkPolicy(p)
}

const isNonNeg = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v >= 0

/** Validates a policy (it may come from a UI, a widget host or a stored job). */
export function checkPolicy(p: VerificationPolicy): VerificationPolicy {
  const bad = (why: string): never => {
    throw new InvalidPolicyError(why)
  }
  if (!Number.isInteger(p.redundancy) || p.redundancy < 1 || p.redundancy > 5) bad('redundancy must be 1–5')
  if (!Number.isInteger(p.quorum) || p.quorum < 1 || p.quorum > p.redundancy)
    bad('quorum must be 1–redundancy')
  if (!Number.isInteger(p.maxAttempts) || p.maxAttempts < p.redundancy || p.maxAttempts > 20) {
    bad('maxAttempts must be redundancy–20')
  }
  if (!isNonNeg(p.deadlineMs) || p.deadlineMs < 100) bad('deadlineMs must be ≥ 100')
  if (!isNonNeg(p.replicaTimeoutMs) || p.replicaTimeoutMs < 100) bad('replicaTimeoutMs must be ≥ 100')
  if (p.dispute !== undefined && typeof p.dispute !== 'boolean') bad('dispute must be a boolean')
  if (p.traceJobs !== undefined && typeof p.traceJobs !== 'boolean') bad('traceJobs must be a boolean')
  // A traced replica computes on one thread without fusion; this tab's own replica runs plain.
  if (p.traceJobs && p.allowSelf && p.compare.kind === 'exact')
    bad('traceJobs with allowSelf needs a tolerance, argmax or top-k rule, not exact')
  const c = p.compare
  if (c.kind === 'tolerance') {
    const tols = [c, ...Object.values(c.perOutput ?? {})]
    if (!tols.every((t) => isNonNeg(t.atol) && isNonNeg(t.rtol))) bad('tolerances must be finite and ≥ 0')
  } else if (c.kind === 'topk') {
    if (!Number.isInteger(c.k) || c.k < 1 || c.k > 1000) bad('top-k needs 1 ≤ k ≤ 1000')
  } else if (c.kind !== 'exact' && c.kind !== 'argmax')
    bad(`unknown comparison ${(c as { kind: string }).kind}`)
  return p
}
