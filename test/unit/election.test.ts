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
    vi.unstubAllGlobals()
    vi.useRealTimers()
  })

  it('queues again when the lock request fails for a reason of the browser, and leads once granted', async () => {
    const { pending, warn, e } = setup()
    e.want(true)
    expect(pending).toHaveLength(1)
    pending[0]!.reject(new DOMException('lock service gone', 'AbortError'))
    await vi.advanceTimersByTimeAsync(600)
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

  it('does not queue again after leaving the queue or closing', async () => {
    const { pending, warn, e } = setup()
    e.want(true)
    e.want(false) // aborts the queued request: our own doing, not retried
    await vi.advanceTimersByTimeAsync(600)
    expect(pending).toHaveLength(1)
    e.want(true)
    pending[1]!.reject(new Error('boom'))
    e.close() // closed before the retry is due
    await vi.advanceTimersByTimeAsync(600)
    expect(pending).toHaveLength(2)
    expect(warn).toHaveBeenCalledTimes(1)
  })
})
