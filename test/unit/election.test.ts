/** The compute-tab election's lock handling, over a fake `navigator.locks` (logic only; the e2e test uses Chromium's). */
import { afterEach, describe, expect, it, vi } from 'vitest'
import { createElection } from '../../src/compute/election.ts'

type Grant = () => Promise<void>
interface Pending {
  signal: AbortSignal
  grant: Grant
  reject: (e: unknown) => void
  resolve: () => void
}

function fakeLocks() {
  const pending: Pending[] = []
  const locks = {
    request(_name: string, opts: { signal: AbortSignal }, cb: () => Promise<void>) {
      return new Promise<void>((resolve, reject) => {
        const p: Pending = { signal: opts.signal, grant: () => cb().then(resolve), reject, resolve }
        opts.signal.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')))
        pending.push(p)
      })
    },
  }
  return { locks, pending }
}

function setup() {
  vi.useFakeTimers()
  const { locks, pending } = fakeLocks()
  vi.stubGlobal('navigator', { locks })
  const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
  return { pending, warn, e: createElection(`t-${Math.random()}`) }
}

describe('compute-tab election', () => {
  afterEach(() => {
    vi.restoreAllMocks()
    vi.unstubAllGlobals()
    vi.useRealTimers()
  })

  it('queues again when the lock request fails for a reason of the browser, and leads once granted', async () => {
    const { pending, warn, e } = setup()
    e.want(true)
    expect(pending).toHaveLength(1)
    pending[0]!.reject(new DOMException('lock service gone', 'AbortError'))
    await vi.advanceTimersByTimeAsync(499)
    expect(pending).toHaveLength(1) // not before the retry is due
    await vi.advanceTimersByTimeAsync(1)
    expect(warn).toHaveBeenCalledTimes(1)
    expect(pending).toHaveLength(2) // queued again
    void pending[1]!.grant()
    await vi.advanceTimersByTimeAsync(0)
    expect(e.leader).toBe(true)
    e.want(false)
    await vi.advanceTimersByTimeAsync(0)
    expect(e.leader).toBe(false)
    e.close()
  })

  it('backs off while failures repeat, warning once', async () => {
    const { pending, warn, e } = setup()
    e.want(true)
    for (const wait of [500, 1000, 2000]) {
      pending.at(-1)!.reject(new Error('dropped'))
      await vi.advanceTimersByTimeAsync(wait - 1)
      const n = pending.length
      await vi.advanceTimersByTimeAsync(1)
      expect(pending).toHaveLength(n + 1)
    }
    expect(warn).toHaveBeenCalledTimes(1)
    e.close()
  })

  it('does not queue again after leaving the queue, closing, or an error that cannot pass', async () => {
    const { pending, warn, e } = setup()
    e.want(true)
    e.want(false) // aborts the queued request: our own doing, not retried
    await vi.advanceTimersByTimeAsync(600)
    expect(pending).toHaveLength(1)
    expect(warn).not.toHaveBeenCalled()
    e.want(true)
    pending[1]!.reject(new Error('dropped'))
    await vi.advanceTimersByTimeAsync(0) // the failure is handled: a retry is due in 500 ms
    e.close()
    await vi.advanceTimersByTimeAsync(600)
    expect(pending).toHaveLength(2)

    const other = createElection(`t-${Math.random()}`)
    other.want(true)
    pending[2]!.reject(new DOMException('opaque origin', 'SecurityError'))
    await vi.advanceTimersByTimeAsync(60_000)
    expect(pending).toHaveLength(3)
    other.close()
  })

  it('queues once when switched on again while a retry is due', async () => {
    const { pending, e } = setup()
    e.want(true)
    pending[0]!.reject(new Error('dropped'))
    await vi.advanceTimersByTimeAsync(0)
    e.want(true) // the switch again, before the retry
    expect(pending).toHaveLength(2)
    await vi.advanceTimersByTimeAsync(600)
    expect(pending).toHaveLength(2)
    e.close()
  })
})
