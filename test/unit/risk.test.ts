/** Stated risk (src/trust/risk.ts): the worst case over liar strategies, and how evidence moves it. */
import { describe, expect, it } from 'vitest'
import { createReputation } from '../../src/trust/reputation.ts'
import { checksOf, RISK_DEFAULTS, riskOfChecks, riskWords, statedRisk } from '../../src/trust/risk.ts'

const peer = (valid: number, invalid = 0) => ({ valid, invalid })

describe('stated risk', () => {
  it('is the prior for one unknown peer, and the prior squared for two that agree', () => {
    expect(statedRisk([peer(0)])).toBeCloseTo(RISK_DEFAULTS.prior, 6)
    expect(statedRisk([peer(0), peer(0)])).toBeCloseTo(RISK_DEFAULTS.prior ** 2, 6)
  })

  it('falls with every cross-checked result and every further agreeing peer', () => {
    const one = [0, 1, 5, 10, 50, 500].map((v) => statedRisk([peer(v)]))
    for (let i = 1; i < one.length; i++) expect(one[i]).toBeLessThan(one[i - 1]!)
    expect(statedRisk([peer(10), peer(10)])).toBeLessThan(statedRisk([peer(10)]) / 10)
    expect(statedRisk([peer(3), peer(3), peer(3)])).toBeLessThan(statedRisk([peer(3), peer(3)]))
  })

  it('counts only the results another peer agreed with: a peer that ran alone proved nothing', () => {
    const alone = { valid: 200, invalid: 0, checked: 0 }
    expect(checksOf(alone)).toBe(0)
    expect(statedRisk([alone])).toBeCloseTo(RISK_DEFAULTS.prior, 6)
    expect(statedRisk([{ valid: 200, invalid: 0, checked: 30 }])).toBeCloseTo(riskOfChecks([30]), 9)
  })

  it('reads a record from before checks were counted as adaptive replication would have checked it', () => {
    expect(checksOf(peer(10))).toBe(10)
    expect(checksOf(peer(110))).toBeCloseTo(20, 9) // 10 replicated, then 10 % of 100 spot-checked
    // 100 more valid results after the streak are worth what 10 checks are, not 100
    expect(statedRisk([peer(110)])).toBeCloseTo(riskOfChecks([20]), 9)
    expect(statedRisk([peer(110)])).toBeGreaterThan(2 * riskOfChecks([110]))
  })

  it('is the worst case over how often a liar lies: a rare liar survives checks', () => {
    // With 50 checks an always-lying peer is ruled out, but one lying 2 % of the time is not.
    const r = statedRisk([peer(50)])
    const p = RISK_DEFAULTS.prior
    const at = (l: number) =>
      (l * p * (1 - l) ** checksOf(peer(50))) / (p * (1 - l) ** checksOf(peer(50)) + 1 - p)
    expect(r).toBeGreaterThanOrEqual(at(0.02) * 0.999)
    expect(r).toBeGreaterThan(at(1))
  })

  it('takes a peer with an invalid result on record as dishonest, and nobody as no evidence', () => {
    expect(statedRisk([peer(40, 1)])).toBeCloseTo(1, 6)
    expect(statedRisk([])).toBe(1)
  })
})

describe('risk in words', () => {
  it('says one in how many, with the percentage', () => {
    expect(riskWords(0.0037)).toBe('1 in 270 (0.37 %)')
    expect(riskWords(0.1)).toBe('1 in 10 (10.0 %)')
    expect(riskWords(1)).toBe('no claim')
    expect(riskWords(0)).toBe('0 (this peer computed it too)')
  })
})

describe('reputation counts checks', () => {
  it('a valid result counts as a check only when it was checked', async () => {
    const rep = await createReputation({
      allReputation: async () => [],
      putReputations: async () => {},
      clearReputation: async () => {},
    })
    await rep.record('p', 'valid', true)
    await rep.record('p', 'valid')
    await rep.record('p', 'valid', false)
    expect(rep.get('p')).toMatchObject({ valid: 3, checked: 1, streak: 3 })
  })
})

describe('risk through reputation', () => {
  const memory = () => ({
    allReputation: async () => [],
    putReputations: async () => {},
    clearReputation: async () => {},
  })

  it('a new peer that only ran alone stays at the prior', async () => {
    const rep = await createReputation(memory())
    for (let i = 0; i < 10; i++) await rep.record('p', 'valid', false)
    expect(rep.get('p')).toMatchObject({ valid: 10, checked: 0 })
    expect(statedRisk([rep.get('p')])).toBeCloseTo(RISK_DEFAULTS.prior, 6)
  })

  it('an old record keeps its cautious reading when its first counted check lands', async () => {
    const old = { peer: 'o', valid: 500, invalid: 0, timedOut: 0, streak: 500, updatedAt: 1 }
    const rep = await createReputation({ ...memory(), allReputation: async () => [old] })
    const before = statedRisk([rep.get('o')])
    await rep.record('o', 'valid', true)
    expect(rep.get('o').checked).toBe(Math.floor(checksOf(old)) + 1)
    expect(statedRisk([rep.get('o')])).toBeLessThanOrEqual(before)
  })
})
