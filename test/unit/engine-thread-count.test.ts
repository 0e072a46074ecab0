/**
 * The default thread count (src/shared/threads.ts), the one formula behind the browser worker's
 * default, the auto engine's N and the Node engine's per-worker threads.
 */
import { availableParallelism } from 'node:os'
import { describe, expect, it } from 'vitest'
import { createNodeEngine } from '../../node/engine.ts'
import { maxThreads } from '../../src/compute/engine.ts'
import { threadCount } from '../../src/shared/threads.ts'

describe('threadCount', () => {
  it('is the cores each engine may use, 1 to 4, and 1 without cross-origin isolation', () => {
    expect([1, 2, 3, 4, 8, 64].map((cores) => threadCount({ cores }))).toEqual([1, 2, 3, 4, 4, 4])
    expect(threadCount({ cores: 8, isolated: false })).toBe(1)
    expect([0, undefined, Number.NaN].map((cores) => threadCount({ cores }))).toEqual([1, 1, 1])
  })

  it('shares the cores among engines that run at once', () => {
    expect(threadCount({ cores: 8, share: 3 })).toBe(2)
    expect(threadCount({ cores: 8, share: 2 })).toBe(4)
    expect(threadCount({ cores: 2, share: 4 })).toBe(1)
    expect(threadCount({ cores: 4, share: 0 })).toBe(4)
  })

  it('gives the auto engine its N and the Node engine its threads', async () => {
    expect(maxThreads()).toBe(1) // Node is not cross-origin isolated
    const engine = createNodeEngine({ workers: 2 })
    try {
      const { threads } = await engine.capabilities()
      expect(threads).toBe(threadCount({ cores: availableParallelism(), share: 2 }))
    } finally {
      engine.close()
      await engine.closed()
    }
  })
})
