/**
 * Jobs waiting for a free contributor slot. One listener per trigger and one shared tick however
 * many jobs wait (a wait is just a Set entry), so a batch of thousands of queued jobs costs no
 * timers or listeners per wake-up.
 */
export interface CapacityWaiters {
  /**
   * Resolves when a trigger fires, or at the next tick (every `tickMs`): a job re-checks its
   * deadline and signal then, so an aborted wait ends within one tick.
   */
  wait(signal: AbortSignal): Promise<void>
  readonly waiting: number
  stop(): void
}

export function createCapacityWaiters(triggers: [EventTarget, string][], tickMs = 1000): CapacityWaiters {
  const waiting = new Set<() => void>()
  let ticker: ReturnType<typeof setInterval> | undefined
  const wakeAll = () => {
    const all = [...waiting]
    waiting.clear()
    clearInterval(ticker)
    ticker = undefined
    for (const wake of all) wake()
  }
  for (const [target, type] of triggers) target.addEventListener(type, wakeAll)
  return {
    wait(signal) {
      if (signal.aborted) return Promise.resolve()
      return new Promise<void>((resolve) => {
        waiting.add(resolve)
        ticker ??= setInterval(wakeAll, tickMs)
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
