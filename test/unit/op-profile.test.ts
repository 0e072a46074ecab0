import { describe, expect, it } from 'vitest'
import { eventsFromText, opProfile } from '../../bench/op-profile.ts'

/** A run of ORT trace events: one model_run span and its kernels, times in µs. */
const run = (ts: number, kernels: [string, number][]) => [
  { cat: 'Session', name: 'model_run', ts, dur: kernels.reduce((s, [, d]) => s + d, 0) + 100 },
  ...kernels.map(([op, dur], i) => ({
    cat: 'Node',
    name: `n${i}_kernel_time`,
    ts: ts + 10 + i,
    dur,
    args: { op_name: op },
  })),
]

describe('ORT profile parsing (bench/op-profile.ts)', () => {
  it('averages ms per op type over the runs after the warm-up', () => {
    const events = [
      ...run(0, [
        ['Conv', 90_000],
        ['Add', 9_000],
      ]), // warm-up: left out
      ...run(200_000, [
        ['Conv', 3_000],
        ['Add', 1_000],
        ['Conv', 1_000],
      ]),
      ...run(400_000, [
        ['Conv', 5_000],
        ['Add', 3_000],
      ]),
      { cat: 'Session', name: 'session_initialization', ts: 1, dur: 50_000 },
    ]
    const p = opProfile(events)
    expect(p.runs).toBe(2)
    expect(p.msByOp).toEqual({ Conv: 4.5, Add: 2 })
    expect(p.runMs).toBeCloseTo((5_100 + 8_100) / 2 / 1000)
  })

  it('refuses a profile without a run after the warm-up', () => {
    expect(() => opProfile(run(0, [['Conv', 1]]))).toThrow(/needs a warm-up and one more/)
  })

  it('reads the event array out of printed text, with a trailing comma or none', () => {
    const ev = { cat: 'Node', name: 'x_kernel_time', ts: 1, dur: 2, args: { op_name: 'Relu' } }
    const printed = `log line\n[\n${JSON.stringify(ev)},\n]\nmore`
    expect(eventsFromText(printed)).toEqual([ev])
    expect(eventsFromText(`[${JSON.stringify(ev)}]`)).toEqual([ev])
    expect(() => eventsFromText('no profile here')).toThrow(/no profile/)
    expect(() => eventsFromText('[{"name": "a"b"}]')).toThrow(/not valid JSON/)
  })
})
