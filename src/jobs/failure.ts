/**
 * What a replica's failure means, in one place: the quorum loop, the requester and the job client
 * branch on this, never on their own lists of names and codes.
 */
import type { RejectCode } from './messages.ts'

export type FailureKind =
  /** Refused for capacity: retried shortly, not an attempt, not punished. */
  | 'busy'
  /** A contributor's answer declining the job: one replica's outcome, never the job's. */
  | 'refused'
  /** Late: reissued elsewhere, counted against the peer. */
  | 'timedOut'
  /** A result or frame that fails verification: the peer lied or broke the protocol. */
  | 'forged'
  /** The link or our side failed: reissued, the peer not blamed. */
  | 'transport'

const FORGERY = new Set([
  'InvalidSignatureError',
  'InvalidReceiptError',
  'OutputMismatchError',
  'MalformedFrameError',
  'FrameTooLargeError',
  'InvalidTensorError',
])

/**
 * Refusals of a job that others computed: they cost the refuser reputation. A contributor that is
 * busy, paused, over its own model size limit or out of time declines honestly and is never punished.
 */
export const PUNISHED_REFUSALS: ReadonlySet<string> = new Set<RejectCode>([
  'unknown-model',
  'bad-request',
  'bad-signature',
  'too-large',
  'internal',
])

export function classifyFailure(err: { name: string; code?: string }): FailureKind {
  if (err.name === 'JobRejectedError') return err.code === 'busy' ? 'busy' : 'refused'
  if (err.name === 'JobTimeoutError') return 'timedOut'
  if (FORGERY.has(err.name)) return 'forged'
  return 'transport'
}

/** Errors that are a peer's answer or our own decision, never a transport failure: not resent on a link. */
export const isAnswered = (err: { name: string }): boolean =>
  err.name === 'AbortError' || classifyFailure(err) !== 'transport'
