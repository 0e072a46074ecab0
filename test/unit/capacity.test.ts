import { describe, expect, it } from 'vitest'
import { createCapacityWaiters } from '../../src/jobs/capacity.ts'

const tick = () => new Promise((r) => setTimeout(r, 0))

/** n jobs waiting, each with a signal of its own; `woken` lists them in the order they woke. */
function queueJobs(w: ReturnType<typeof createCapacityWaiters>, n: number) {
  const woken: number[] = []
  const signals = Array.from({ length: n }, () => new AbortController().signal)
  const waits = signals.map((s, i) => w.wait(s).then(() => woken.push(i)))
  return { woken, signals, waits }
}

describe('capacity waiters', () => {
  it('without a free-slot count, wakes every waiter on a trigger and keeps nothing registered', async () => {
    const release = new EventTarget()
    const w = createCapacityWaiters([[release, 'release']], { tickMs: 60_000 })
    const { woken, waits } = queueJobs(w, 1000)
    expect(w.waiting).toBe(1000)
    release.dispatchEvent(new Event('release'))
    await Promise.all(waits)
    expect(woken).toHaveLength(1000)
    expect(w.waiting).toBe(0)
  })

  it('wakes as many as there are free slots, first come first served', async () => {
    const release = new EventTarget()
    let free = 3
    const w = createCapacityWaiters([[release, 'release']], { free: () => free, tickMs: 60_000 })
    const { woken } = queueJobs(w, 1000)
    release.dispatchEvent(new Event('release'))
    await tick()
    expect(woken).toEqual([0, 1, 2])
    expect(w.waiting).toBe(997)
    free = 0 // a trigger with nothing free still wakes one, to look
    release.dispatchEvent(new Event('release'))
    await tick()
    expect(woken).toEqual([0, 1, 2, 3])
    w.stop()
  })

  it('passes the turn of a woken job that waits again to the next in line, only while slots are free', async () => {
    const release = new EventTarget()
    let free = 1
    const w = createCapacityWaiters([[release, 'release']], { free: () => free, tickMs: 60_000 })
    const { woken, signals } = queueJobs(w, 5)
    release.dispatchEvent(new Event('release'))
    await tick()
    expect(woken).toEqual([0])
    // job 0 could not use the free slot (say, it must avoid that peer): it waits again
    void w.wait(signals[0]!)
    await tick()
    expect(woken).toEqual([0, 1])
    // job 1 took it: nothing is free, and waiting again passes nothing on
    free = 0
    void w.wait(signals[1]!)
    await tick()
    expect(woken).toEqual([0, 1])
    expect(w.waiting).toBe(5)
    w.stop()
  })

  it('lets a job that gives up while queued leave at once, so a freed slot goes to the next', async () => {
    const release = new EventTarget()
    const w = createCapacityWaiters([[release, 'release']], { free: () => 1, tickMs: 60_000 })
    const first = new AbortController()
    const woken: string[] = []
    void w.wait(first.signal).then(() => woken.push('first'))
    void w.wait(new AbortController().signal).then(() => woken.push('second'))
    first.abort() // its deadline passed while it waited
    await tick()
    expect(woken).toEqual(['first'])
    expect(w.waiting).toBe(1)
    release.dispatchEvent(new Event('release'))
    await tick()
    expect(woken).toEqual(['first', 'second'])
    w.stop()
  })

  it('passes nothing on after a tick woke everyone, and resolves every wait after stop()', async () => {
    let frees = 0
    const w = createCapacityWaiters([[new EventTarget(), 'change']], {
      free: () => {
        frees++
        return 5
      },
      tickMs: 20,
    })
    const { signals, waits } = queueJobs(w, 3)
    await Promise.all(waits) // the tick
    frees = 0
    for (const s of signals) void w.wait(s) // all woken this round: none has a turn to pass on
    expect(frees).toBe(0)
    expect(w.waiting).toBe(3)
    w.stop()
    expect(w.waiting).toBe(0)
    await w.wait(new AbortController().signal) // would hang on a stopped queue otherwise
  })

  it('wakes everyone at the next tick without a trigger, and an aborted signal at once', async () => {
    const w = createCapacityWaiters([[new EventTarget(), 'change']], { free: () => 0, tickMs: 20 })
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
