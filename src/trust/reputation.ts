/**
 * Reputation: per-peer valid / invalid / timed-out counts and the consecutive-valid streak that
 * drives adaptive replication. Kept in memory, written behind to IndexedDB (at most every 500 ms).
 */
import type { ReputationRecord } from '../store/schema.ts'
import { checksOf } from './risk.ts'

export interface ReputationParams {
  /** Peers scoring below this are not chosen (after `minObservations`). */
  threshold: number
  minObservations: number
  /** An invalid result weighs this many valid ones: wrong answers are strong evidence. */
  invalidWeight: number
  timeoutWeight: number
  /** A refusal of a job that others computed (src/jobs/failure.ts PUNISHED_REFUSALS). */
  refusalWeight: number
  /** Valid results before a peer ranks above newcomers. */
  provenAfter: number
}

export const REPUTATION_DEFAULTS: ReputationParams = {
  threshold: 0.75,
  minObservations: 3,
  invalidWeight: 5,
  timeoutWeight: 0.5,
  refusalWeight: 0.5,
  provenAfter: 3,
}

export type Outcome = 'valid' | 'invalid' | 'timedOut' | 'refused'

export interface Reputation {
  get(peer: string): ReputationRecord
  /** Laplace-smoothed reliability in (0, 1]. */
  score(peer: string): number
  trusted(peer: string): boolean
  /** Has delivered enough valid results to rank above newcomers. */
  proven(peer: string): boolean
  /** `checked`: a valid result that other peers' agreed with (not a lone, unreplicated one). */
  record(peer: string, outcome: Outcome, checked?: boolean): Promise<void>
  all(): ReputationRecord[]
  reset(): Promise<void>
  /** Writes the held-back changes now (the page is going away). */
  flush(): Promise<void>
  events: EventTarget
}

export interface ReputationPersistence {
  allReputation(): Promise<ReputationRecord[]>
  putReputations(recs: ReputationRecord[]): Promise<void>
  clearReputation(): Promise<void>
}

const empty = (peer: string): ReputationRecord => ({
  peer,
  valid: 0,
  invalid: 0,
  timedOut: 0,
  refused: 0,
  checked: 0,
  streak: 0,
  updatedAt: 0,
})

/** Changes are written this long after the first one, together: one transaction, not one per job. */
const WRITE_DELAY_MS = 500

export async function createReputation(
  db: ReputationPersistence,
  params: ReputationParams = REPUTATION_DEFAULTS,
): Promise<Reputation> {
  const recs = new Map((await db.allReputation()).map((r) => [r.peer, r]))
  const dirty = new Set<string>()
  let timer: ReturnType<typeof setTimeout> | undefined
  let held: Promise<void> | undefined // the held-back write, settled once committed
  let release: (() => void) | undefined // starts it now
  let chain = Promise.resolve() // writes and clears, in order
  function write(): Promise<void> {
    clearTimeout(timer)
    held = release = undefined
    const batch = [...dirty].flatMap((p) => recs.get(p) ?? [])
    dirty.clear()
    const done = chain.then(() => (batch.length ? db.putReputations(batch) : undefined))
    chain = done.catch(() => {})
    return done
  }
  const events = new EventTarget()
  const get = (peer: string) => recs.get(peer) ?? empty(peer)
  const score = (peer: string) => {
    const r = get(peer)
    const bad =
      params.invalidWeight * r.invalid +
      params.timeoutWeight * r.timedOut +
      params.refusalWeight * (r.refused ?? 0)
    return (r.valid + 1) / (r.valid + bad + 2)
  }
  return {
    get,
    score,
    trusted(peer) {
      const r = get(peer)
      const seen = r.valid + r.invalid + r.timedOut + (r.refused ?? 0)
      return seen < params.minObservations || score(peer) >= params.threshold
    },
    proven: (peer) => get(peer).valid >= params.provenAfter && score(peer) >= params.threshold,
    async record(peer, outcome, checked = false) {
      const r = { ...get(peer), updatedAt: Date.now() }
      // A record from before checks were counted starts from what adaptive replication would have checked.
      r.checked ??= Math.floor(checksOf(r))
      r[outcome] = (r[outcome] ?? 0) + 1
      if (outcome === 'valid' && checked) r.checked++
      if (outcome === 'valid') r.streak++
      else if (outcome === 'invalid' || outcome === 'refused') r.streak = 0
      recs.set(peer, r)
      dirty.add(peer)
      events.dispatchEvent(new Event('change'))
      held ??= new Promise<void>((r) => {
        release = r
        timer = setTimeout(r, WRITE_DELAY_MS)
      }).then(write)
      await held
    },
    all: () => [...recs.values()],
    async reset() {
      recs.clear()
      dirty.clear()
      const done = chain.then(() => db.clearReputation())
      chain = done.catch(() => {})
      events.dispatchEvent(new Event('change'))
      await done
    },
    flush() {
      const h = held
      release?.()
      return h ?? write()
    },
    events,
  }
}
