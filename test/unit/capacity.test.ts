import { describe, expect, it } from 'vitest'
import { createCapacityWaiters } from '../../src/jobs/capacity.ts'

describe('capacity waiters', () => {
  it('wakes every waiter on a trigger and keeps nothing registered afterwards', async () => {
    const release = new EventTarget()
    const w = createCapacityWaiters([[release, 'release']], 60_000)
    const job = new AbortController()
    let woken = 0
    const waits = Array.from({ length: 1000 }, () => w.wait(job.signal).then(() => woken++))
    expect(w.waiting).toBe(1000)
    release.dispatchEvent(new Event('release'))
    await Promise.all(waits)
    expect(woken).toBe(1000)
    expect(w.waiting).toBe(0)
  })

  it('wakes waiters at the next tick without a trigger, and an aborted signal at once', async () => {
    const w = createCapacityWaiters([[new EventTarget(), 'change']], 20)
    const t0 = Date.now()
    await Promise.all([w.wait(new AbortController().signal), w.wait(new AbortController().signal)])
    expect(Date.now() - t0).toBeLessThan(1000)
    expect(w.waiting).toBe(0)
    const job = new AbortController()
    job.abort()
    await w.wait(job.signal)
    expect(w.waiting).toBe(0)
    w.stop()
  })
})
