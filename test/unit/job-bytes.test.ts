/** A job record's cost to the history byte budget counts its texts, not only its byte fields. */
import { describe, expect, it } from 'vitest'
import { type JobRecord, jobBytes } from '../../src/store/schema.ts'

const rec: JobRecord = {
  id: 'j',
  model: 'm',
  modelName: 'm',
  status: 'failed',
  submittedAt: 1,
  verified: false,
}

describe('jobBytes', () => {
  it('counts receipts and records, and every stored text a peer could have made large', () => {
    expect(jobBytes(rec)).toBe(0)
    expect(jobBytes({ ...rec, receipt: new Uint8Array(10), record: new Uint8Array(20) })).toBe(30)
    const reason = 'r'.repeat(1000)
    const replicas = [{ peer: 'p'.repeat(52), status: 'refused', error: 'e'.repeat(700) }]
    // UTF-16: two bytes a character, as the browser holds and stores them.
    expect(jobBytes({ ...rec, reason })).toBe(2000)
    expect(jobBytes({ ...rec, replicas })).toBe(2 * (52 + 700))
    expect(jobBytes({ ...rec, error: { name: 'X', message: 'm'.repeat(10) } })).toBe(20)
  })
})
