/**
 * Jobs waiting for a free contributor slot. One listener per trigger however many jobs wait (a
 * wait is a Set entry, removed when it ends), so a batch of thousands costs O(1) per wake-up
 * instead of piling listeners onto long-lived event targets.
 */
export interface CapacityWaiters {
  /** Resolves when a trigger fires, after `maxWaitMs`, or on abort: whichever is first. */
  wait(signal: AbortSignal, maxWaitMs: number): Promise<void>
  readonly waiting: number
  stop(): void
}

export function createCapacityWaiters(triggers: [EventTarget, string][]): CapacityWaiters {
  const waiting = new Set<() => void>()
  const wakeAll = () => {
    const all = [...waiting]
    waiting.clear()
    for (const wake of all) wake()
  }
  for (const [target, type] of triggers) target.addEventListener(type, wakeAll)
  return {
    wait(signal, maxWaitMs) {
      return new Promise<void>((resolve) => {
        if (signal.aborted) return resolve()
        const done = () => {
          clearTimeout(timer)
          waiting.delete(done)
          signal.removeEventListener('abort', done)
          resolve()
        }
        const timer = setTimeout(done, maxWaitMs)
        signal.addEventListener('abort', done)
        waiting.add(done)
      })
    },
    get waiting() {
      return waiting.size
    },
    stop() {
      for (const [target, type] of triggers) target.removeEventListener(type, wakeAll)
      wakeAll()
    },
  }
}
