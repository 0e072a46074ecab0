/** node/limit.ts: a shared limit with abortable waiters, and ordered runs that fail as a loop would. */
import { describe, expect, it } from 'vitest'
import { createLimit, orderedRuns } from '../../node/limit.ts'

const idle = async () => {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r))
}

/** A promise and the functions that settle it. */
function deferred<T = void>() {
  let resolve!: (v: T) => void
  let reject!: (e: unknown) => void
  const promise = new Promise<T>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

describe('createLimit', () => {
  it('runs at most n at once, first come first served; an aborted waiter takes no slot', async () => {
    const limit = createLimit(2)
    const gates = [0, 1, 2, 3].map(() => deferred())
    const started: number[] = []
    const quit = new AbortController()
    const runs = gates.map((g, i) =>
      limit(
        async () => {
          started.push(i)
          await g.promise
          return i
        },
        i === 2 ? quit.signal : undefined,
      ),
    )
    await idle()
    expect(started).toEqual([0, 1])
    quit.abort(new Error('no longer wanted'))
    await expect(runs[2]).rejects.toThrow('no longer wanted')
    gates[1]!.resolve()
    await idle()
    expect(started).toEqual([0, 1, 3])
    gates[0]!.resolve()
    gates[3]!.resolve()
    expect(await Promise.all([runs[0], runs[1], runs[3]])).toEqual([0, 1, 3])
    // Both slots are free again, not one leaked or doubled.
    const more = [deferred(), deferred(), deferred()]
    const again: number[] = []
    const second = more.map((g, i) =>
      limit(async () => {
        again.push(i)
        await g.promise
      }),
    )
    await idle()
    expect(again).toEqual([0, 1])
    for (const g of more) g.resolve()
    await Promise.all(second)
  })
})

describe('orderedRuns', () => {
  it("results come in the items' order; the earliest failure wins and later items are aborted", async () => {
    const gates = [0, 1, 2, 3].map(() => deferred<string>())
    const signals: AbortSignal[] = []
    const seen: string[] = []
    const p = orderedRuns(
      [0, 1, 2, 3],
      (i, _k, signal) => {
        signals.push(signal)
        return gates[i]!.promise
      },
      { concurrency: 4, onResult: (r) => seen.push(r) },
    )
    p.catch(() => {})
    await idle()
    gates[0]!.resolve('zero')
    gates[2]!.reject(new Error('two failed')) // first in time…
    await idle()
    expect(signals[3]!.aborted).toBe(true)
    expect(signals[1]!.aborted).toBe(false) // …but item 1 runs on, as a loop would have run it first
    gates[1]!.reject(new Error('one failed'))
    gates[3]!.resolve('three')
    await expect(p).rejects.toThrow('one failed')
    expect(seen).toEqual(['zero'])
  })

  it('starts items in order as their weights fit; one heavier than the capacity runs alone', async () => {
    const gates = [0, 1, 2, 3].map(() => deferred<number>())
    const running = new Set<number>()
    const together: number[][] = []
    const p = orderedRuns(
      [2, 1, 9, 1],
      async (_w, i) => {
        running.add(i)
        together.push([...running])
        try {
          return await gates[i]!.promise
        } finally {
          running.delete(i)
        }
      },
      { concurrency: 3, weight: (w) => w, capacity: 3 },
    )
    await idle()
    expect([...running]).toEqual([0, 1])
    gates[0]!.resolve(0)
    await idle()
    expect([...running]).toEqual([1]) // item 2 waits for the room to empty; item 3 may not overtake it
    gates[1]!.resolve(1)
    await idle()
    expect([...running]).toEqual([2])
    gates[2]!.resolve(2)
    await idle()
    gates[3]!.resolve(3)
    expect(await p).toEqual([0, 1, 2, 3])
    expect(together).toEqual([[0], [0, 1], [2], [3]])
  })
})
