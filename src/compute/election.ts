/**
 * One compute tab per browser: tabs that want to contribute queue for a Web Lock; the holder is the
 * compute tab. The lock is released the moment its tab closes, so the next tab in the queue takes
 * over at once. The leader publishes its status on a BroadcastChannel for the other tabs.
 * (Identity slots use other lock names: `<store>:id:<n>`.)
 */

export interface LeaderStatus {
  peer: string
  at: number
  [k: string]: unknown
}

export interface Election {
  /** This tab holds the lock. */
  readonly leader: boolean
  /** The leader's latest status, from this tab or another (undefined when none has spoken for 3 s). */
  readonly status: LeaderStatus | undefined
  /** Queue for the lock (true) or leave the queue / step down (false). */
  want(on: boolean): void
  /** Publish this tab's status (leaders only; others ignore it). */
  publish(status: LeaderStatus): void
  /** Send any other message to the other tabs. */
  send(msg: { t: string; [k: string]: unknown }): void
  /** 'change' (leadership or status), and 'message' (CustomEvent with a non-status message). */
  events: EventTarget
  close(): void
}

const STALE_MS = 3000
const RETRY_MS = 500
const RETRY_MAX_MS = 30_000
const PERMANENT = new Set(['SecurityError', 'NotSupportedError', 'InvalidStateError'])

export function createElection(name: string): Election {
  const events = new EventTarget()
  const channel = new BroadcastChannel(`${name}:compute`)
  let leader = false
  let status: LeaderStatus | undefined
  let queued: AbortController | undefined
  let stepDown: (() => void) | undefined
  let wanted = false
  let retryMs = RETRY_MS
  const changed = () => events.dispatchEvent(new Event('change'))

  channel.onmessage = (e: MessageEvent) => {
    const m = e.data as { t?: unknown; status?: LeaderStatus } | null
    if (m?.t === 'status' && typeof m.status?.peer === 'string') {
      status = m.status
      changed()
    } else if (m?.t === 'leaving') {
      status = undefined
      changed()
    } else if (typeof m?.t === 'string') events.dispatchEvent(new CustomEvent('message', { detail: m }))
  }
  const staleTimer = setInterval(() => {
    if (!leader && status && Date.now() - status.at > STALE_MS) {
      status = undefined
      changed()
    }
  }, 1000)

  function queue(): void {
    const ctl = new AbortController()
    queued = ctl
    navigator.locks
      .request(`${name}:compute-leader`, { signal: ctl.signal }, () => {
        retryMs = RETRY_MS
        leader = true
        changed()
        return new Promise<void>((resolve) => {
          stepDown = resolve
        })
      })
      .then(
        () => undefined,
        (err: unknown) => (ctl.signal.aborted ? undefined : (err as Error)), // aborted: we left the queue
      )
      .then((err) => {
        if (queued === ctl) queued = undefined
        if (leader) {
          leader = false
          channel.postMessage({ t: 'leaving' })
          changed()
        }
        if (err) retryAfter(err)
      })
  }

  /**
   * A request failed, not by our doing (say the browser's lock service dropped it): queue again
   * while wanted, backing off 0.5 → 30 s. Errors that cannot pass (no lock access here) end it.
   */
  function retryAfter(err: Error): void {
    if (PERMANENT.has(err.name)) {
      console.warn('compute-tab election: no lock access, this tab cannot compute', err)
      return
    }
    if (retryMs === RETRY_MS) console.warn('compute-tab election: lock request failed, queuing again', err)
    setTimeout(() => wanted && !queued && queue(), retryMs)
    retryMs = Math.min(retryMs * 2, RETRY_MAX_MS)
  }

  return {
    get leader() {
      return leader
    },
    get status() {
      return status
    },
    want(on) {
      wanted = on
      if (on && !queued) queue()
      if (!on && queued) {
        queued.abort()
        stepDown?.()
        stepDown = undefined
        queued = undefined
      }
    },
    publish(s) {
      if (!leader) return
      status = s
      channel.postMessage({ t: 'status', status: s })
    },
    send: (msg) => channel.postMessage(msg),
    events,
    close() {
      this.want(false)
      clearInterval(staleTimer)
      channel.close()
    },
  }
}
