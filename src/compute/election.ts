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

/** One tab's side of the election: its place in the lock queue and what it knows of the leader. */
interface ElectionState {
  name: string
  events: EventTarget
  channel: BroadcastChannel
  leader: boolean
  status: LeaderStatus | undefined
  queued: AbortController | undefined
  stepDown: (() => void) | undefined
  wanted: boolean
  retryMs: number
}

const changed = (s: ElectionState) => s.events.dispatchEvent(new Event('change'))

export function createElection(name: string): Election {
  const s: ElectionState = {
    name,
    events: new EventTarget(),
    channel: new BroadcastChannel(`${name}:compute`),
    leader: false,
    status: undefined,
    queued: undefined,
    stepDown: undefined,
    wanted: false,
    retryMs: RETRY_MS,
  }
  s.channel.onmessage = (e: MessageEvent) => onMessage(s, e)
  const staleTimer = setInterval(() => {
    if (!s.leader && s.status && Date.now() - s.status.at > STALE_MS) {
      s.status = undefined
      changed(s)
    }
  }, 1000)

  return {
    get leader() {
      return s.leader
    },
    get status() {
      return s.status
    },
    want(on) {
      s.wanted = on
      if (on && !s.queued) queue(s)
      if (!on && s.queued) {
        s.queued.abort()
        s.stepDown?.()
        s.stepDown = undefined
        s.queued = undefined
      }
    },
    publish(status) {
      if (!s.leader) return
      s.status = status
      s.channel.postMessage({ t: 'status', status })
    },
    send: (msg) => s.channel.postMessage(msg),
    events: s.events,
    close() {
      this.want(false)
      clearInterval(staleTimer)
      s.channel.close()
    },
  }
}

function onMessage(s: ElectionState, e: MessageEvent): void {
  const m = e.data as { t?: unknown; status?: LeaderStatus } | null
  if (m?.t === 'status' && typeof m.status?.peer === 'string') {
    s.status = m.status
    changed(s)
  } else if (m?.t === 'leaving') {
    s.status = undefined
    changed(s)
  } else if (typeof m?.t === 'string') s.events.dispatchEvent(new CustomEvent('message', { detail: m }))
}

function queue(s: ElectionState): void {
  const ctl = new AbortController()
  s.queued = ctl
  navigator.locks
    .request(`${s.name}:compute-leader`, { signal: ctl.signal }, () => {
      s.retryMs = RETRY_MS
      s.leader = true
      changed(s)
      return new Promise<void>((resolve) => {
        s.stepDown = resolve
      })
    })
    .then(
      () => undefined,
      (err: unknown) => (ctl.signal.aborted ? undefined : (err as Error)), // aborted: we left the queue
    )
    .then((err) => {
      if (s.queued === ctl) s.queued = undefined
      if (s.leader) {
        s.leader = false
        s.channel.postMessage({ t: 'leaving' })
        changed(s)
      }
      if (err) retryAfter(s, err)
    })
}

/**
 * A request failed, not by our doing (say the browser's lock service dropped it): queue again
 * while wanted, backing off 0.5 → 30 s. Errors that cannot pass (no lock access here) end it.
 */
function retryAfter(s: ElectionState, err: Error): void {
  if (PERMANENT.has(err.name)) {
    console.warn('compute-tab election: no lock access, this tab cannot compute', err)
    return
  }
  if (s.retryMs === RETRY_MS) console.warn('compute-tab election: lock request failed, queuing again', err)
  setTimeout(() => s.wanted && !s.queued && queue(s), s.retryMs)
  s.retryMs = Math.min(s.retryMs * 2, RETRY_MAX_MS)
}
