/** The relay's per-peer advert rate limit (node/relay/advert-gate.ts), on a fake clock. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createAdvertGate, type GateVerdict } from '../../node/relay/advert-gate.ts'

describe('advert gate', () => {
  beforeEach(() => vi.useFakeTimers())
  afterEach(() => vi.useRealTimers())

  const verdicts = (ps: Promise<GateVerdict>[]) => {
    const out: (GateVerdict | 'waiting')[] = ps.map(() => 'waiting')
    ps.forEach((p, i) => void p.then((v) => (out[i] = v)))
    return out
  }

  it('passes a burst, then drops all but the newest, which goes when the budget allows', async () => {
    const gate = createAdvertGate({ perMinute: 60, burst: 3, now: () => Date.now() })
    const got = verdicts(Array.from({ length: 8 }, (_, i) => gate.admit('A', [100, i])))
    await vi.advanceTimersByTimeAsync(0)
    expect(got).toEqual(['accept', 'accept', 'accept', 'ignore', 'ignore', 'ignore', 'ignore', 'waiting'])
    await vi.advanceTimersByTimeAsync(999)
    expect(got[7]).toBe('waiting')
    await vi.advanceTimersByTimeAsync(1)
    expect(got[7]).toBe('accept') // one a second at 60 a minute
    expect(gate.dropped).toBe(4)
    gate.stop()
  })

  it('counts each peer on its own', async () => {
    const gate = createAdvertGate({ perMinute: 60, burst: 1 })
    const got = verdicts([gate.admit('A', [1, 1]), gate.admit('B', [1, 1]), gate.admit('A', [1, 2])])
    await vi.advanceTimersByTimeAsync(0)
    expect(got).toEqual(['accept', 'accept', 'waiting'])
    gate.stop()
    await vi.advanceTimersByTimeAsync(0)
    expect(got[2]).toBe('ignore') // stop lets nothing wait forever
  })

  it('keeps the newer advert held when an older one arrives late', async () => {
    const gate = createAdvertGate({ perMinute: 60, burst: 1 })
    const got = verdicts([gate.admit('A', [1, 1]), gate.admit('A', [5, 1]), gate.admit('A', [3, 9])])
    await vi.advanceTimersByTimeAsync(1000)
    expect(got).toEqual(['accept', 'accept', 'ignore'])
    gate.stop()
  })

  it('forwards at most the rate (plus the burst) over a minute of flooding', async () => {
    const gate = createAdvertGate({ perMinute: 30, burst: 5 })
    const ps: Promise<GateVerdict>[] = []
    for (let t = 0; t < 60_000; t += 50) {
      ps.push(gate.admit('A', [t, 0]))
      await vi.advanceTimersByTimeAsync(50)
    }
    await vi.advanceTimersByTimeAsync(5000)
    const got = await Promise.all(ps)
    const accepted = got.filter((v) => v === 'accept').length
    expect(accepted).toBeGreaterThanOrEqual(30)
    expect(accepted).toBeLessThanOrEqual(36)
    expect(got.at(-1)).toBe('accept') // the flood's last word still goes out
    gate.stop()
  })

  it('bounds what it holds: past maxHeld peers, the excess is dropped at once', async () => {
    const gate = createAdvertGate({ perMinute: 60, burst: 1, maxHeld: 2 })
    for (const p of ['A', 'B', 'C']) await gate.admit(p, [1, 1])
    const got = verdicts(['A', 'B', 'C'].map((p) => gate.admit(p, [2, 1])))
    await vi.advanceTimersByTimeAsync(0)
    expect(got).toEqual(['waiting', 'waiting', 'ignore'])
    gate.stop()
  })
})
