import { describe, expect, it } from 'vitest'
import { createCapacityWaiters } from '../../src/jobs/capacity.ts'

describe('capacity waiters', () => {
  it('wakes every waiter on a trigger and keeps nothing registered afterwards', async () => {
    const release = new EventTarget()
    const w = createCapacityWaiters([[release, 'release']])
    const job = new AbortController()
    let woken = 0
    const waits = Array.from({ length: 1000 }, () => w.wait(job.signal, 60_000).then(() => woken++))
    expect(w.waiting).toBe(1000)
    release.dispatchEvent(new Event('release'))
    await Promise.all(waits)
    expect(woken).toBe(1000)
    expect(w.waiting).toBe(0)
  })

  it('ends a wait on abort or after maxWaitMs, removing it', async () => {
    const w = createCapacityWaiters([[new EventTarget(), 'change']])
    const job = new AbortController()
    const aborted = w.wait(job.signal, 60_000)
    const timed = w.wait(new AbortController().signal, 20)
    expect(w.waiting).toBe(2)
    job.abort()
    await aborted
    expect(w.waiting).toBe(1)
    await timed
    expect(w.waiting).toBe(0)
    await w.wait(job.signal, 60_000) // already aborted: at once
  })
})
