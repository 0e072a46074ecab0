/** The calibration cache (src/store/calibration.ts) over an in-memory settings store: malformed records read as none. */
import { describe, expect, it } from 'vitest'
import { calibrationStore } from '../../src/store/calibration.ts'

const CID = 'bafkreidyllbzbuwb2fdgttvsc6notidx5yr5wgl6z2qhcptapjy3pkxbja'
const rec = { v: 1 as const, cid: CID, threads: 2, maxThreads: 2, medianMs: { 1: 10, 2: 6 }, at: 0 }

function settings() {
  const m = new Map<string, unknown>()
  return {
    m,
    getSetting: async <T>(k: string) => m.get(k) as T | undefined,
    putSetting: async (k: string, v: unknown) => void m.set(k, v),
  }
}

describe('calibrationStore', () => {
  it('returns a stored record, with or without a count of checks', async () => {
    const s = settings()
    const store = calibrationStore(s)
    await store.put({ ...rec, checks: 3 })
    expect(await store.get(CID)).toMatchObject({ threads: 2, checks: 3 })
    s.m.set(`calibration/${CID}`, rec)
    expect(await store.get(CID)).toMatchObject({ threads: 2 })
  })

  it('reads a record with a bad thread count or count of checks as none (the model calibrates again)', async () => {
    const s = settings()
    const store = calibrationStore(s)
    for (const bad of [
      { threads: 0 },
      { threads: 1.5 },
      { checks: 0 },
      { checks: 2.5 },
      { checks: '2' },
      { v: 2 },
    ]) {
      s.m.set(`calibration/${CID}`, { ...rec, ...bad })
      expect(await store.get(CID)).toBeUndefined()
    }
  })
})
