/** The link budget (src/net/link-plan.ts): who is dialled, who is closed, and that links do not churn. */
import { describe, expect, it } from 'vitest'
import { type LinkCandidate, linkPlanDefaults, planLinks } from '../../src/net/link-plan.ts'

const peer = (id: string, o: Partial<LinkCandidate> = {}): LinkCandidate => ({
  id,
  contributing: true,
  free: 1,
  models: [],
  firstSeenAt: 0,
  linked: false,
  outbound: false,
  idleMs: 0,
  ...o,
})
const opts = (budget: number, wanted: string[] = []) => ({
  ...linkPlanDefaults(budget),
  wanted: new Set(wanted),
})

describe('planLinks', () => {
  it('with no demand, keeps a warm quarter of the budget, contributors with free slots first', () => {
    const peers = [
      peer('req', { contributing: false, free: 0 }),
      peer('full', { free: 0 }),
      ...Array.from({ length: 20 }, (_, i) => peer(`c${String(i).padStart(2, '0')}`, { firstSeenAt: i })),
    ]
    const { dial, close } = planLinks(peers, opts(16))
    expect(dial).toEqual(['c00', 'c01', 'c02', 'c03'])
    expect(close).toEqual([])
  })

  it('a small swarm is a full mesh, requesters included, as before the budget', () => {
    const peers = [peer('a'), peer('b', { contributing: false, free: 0 }), peer('c', { linked: true })]
    expect(planLinks(peers, opts(32)).dial.sort()).toEqual(['a', 'b'])
  })

  it('demand opens the whole budget, holders of the wanted model first', () => {
    const peers = Array.from({ length: 40 }, (_, i) =>
      peer(`p${String(i).padStart(2, '0')}`, { firstSeenAt: i, models: i >= 30 ? ['m'] : [] }),
    )
    const { dial } = planLinks(peers, opts(16, ['m']))
    expect(dial).toHaveLength(16)
    expect(dial.slice(0, 10)).toEqual(Array.from({ length: 10 }, (_, i) => `p${30 + i}`))
  })

  it('closes our idle links past the target, least useful first, never a busy or recent one', () => {
    const peers = [
      peer('a', { linked: true, outbound: true, idleMs: 120_000 }),
      peer('b', { linked: true, outbound: true, idleMs: 120_000, free: 0 }),
      peer('c', { linked: true, outbound: true, idleMs: 0, free: 0, contributing: false }),
      peer('d', { linked: true, outbound: false, idleMs: 120_000, free: 0, contributing: false }),
    ]
    // budget 4: warm 1. a stays (best); b is idle and ours: closed; c is busy; d is not ours.
    expect(planLinks(peers, opts(4))).toEqual({ dial: [], close: ['b'] })
  })

  it('a held link wins ties: equals do not replace each other', () => {
    const peers = [
      peer('a', { firstSeenAt: 5, linked: true, outbound: true, idleMs: 999_999 }),
      peer('b', { firstSeenAt: 0 }),
    ]
    expect(planLinks(peers, opts(4))).toEqual({ dial: [], close: [] })
  })

  it('past the ceiling, idle links go whoever dialled them', () => {
    const peers = Array.from({ length: 12 }, (_, i) =>
      peer(`in${i}`, {
        linked: true,
        outbound: false,
        idleMs: i < 6 ? 100_000 + i : 0,
        contributing: false,
        free: 0,
      }),
    )
    // budget 4 → ceiling 8: 12 linked, 6 idle, warm 1 chosen (in0 on ties): 4 idle ones go, idlest first.
    const { close } = planLinks(peers, opts(4))
    expect(close).toEqual(['in5', 'in4', 'in3', 'in2'])
  })
})
