/**
 * The credit log verifies offline, and any tampering fails: a removed entry (middle or end), a changed
 * count or total, an altered receipt signature, a broken link, a repeated receipt.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { toString as bytesToString, fromString } from 'uint8arrays'
import { beforeAll, describe, expect, it } from 'vitest'
import type { CreditRecord } from '../../src/store/schema.ts'
import {
  type CreditLogFile,
  creditEntryCid,
  exportCreditLog,
  nextCreditEntry,
  verifyCreditLog,
} from '../../src/trust/credit-log.ts'
import { generateIdentity, peerIdOf } from '../../src/trust/keys.ts'
import { encodeReceipt, signReceipt } from '../../src/trust/receipt.ts'

const cidOf = async (s: string) => CID.createV1(0x71, await sha256.digest(new TextEncoder().encode(s)))
const decode = (b: Uint8Array) => JSON.parse(new TextDecoder().decode(b)) as CreditLogFile
const encode = (f: CreditLogFile) => new TextEncoder().encode(JSON.stringify(f))

async function failure(bytes: Uint8Array): Promise<string> {
  try {
    await verifyCreditLog(bytes)
  } catch (err) {
    expect((err as Error).name).toBe('InvalidCreditLogError')
    return (err as Error).message
  }
  throw new Error('expected verification to fail')
}

/** Re-links entries from `from` on, as a forger without the exporter's key would have to. */
async function relink(f: CreditLogFile, from: number): Promise<void> {
  for (let i = from; i < f.entries.length; i++) {
    const e = f.entries[i]!
    e.seq = i
    e.prev = i === 0 ? '' : f.entries[i - 1]!.cid
    e.cid = await creditEntryCid(i, e.prev, fromString(e.receipt, 'base64'))
  }
}

describe('credit log', () => {
  let key: Awaited<ReturnType<typeof generateIdentity>>
  let records: CreditRecord[]
  let good: Uint8Array

  beforeAll(async () => {
    key = await generateIdentity()
    const requester = peerIdOf(await generateIdentity())
    records = []
    for (let i = 0; i < 5; i++) {
      const receipt = await signReceipt(
        {
          v: 1,
          job: await cidOf(`job ${i}`),
          model: await cidOf('model'),
          input: await cidOf(`in ${i}`),
          output: await cidOf(`out ${i}`),
          worker: peerIdOf(key),
          requester,
          ep: 'wasm',
          adapter: 'none',
          timing: { queueUs: 10, runUs: 1000 + i },
          ts: 1_700_000_000_000 + i,
        },
        key,
      )
      records.push(await nextCreditEntry(records.at(-1), encodeReceipt(receipt), 1_700_000_000_000 + i))
    }
    good = await exportCreditLog(records, key, 1_700_000_001_000)
  })

  it('verifies an honest log: chain, signatures and totals', async () => {
    const r = await verifyCreditLog(good)
    expect(r).toMatchObject({
      count: 5,
      credit: 5,
      runUs: 5010,
      signer: peerIdOf(key),
      workers: [peerIdOf(key)],
    })
    expect(r.cid).toBe(records.at(-1)!.cid)
    expect(await verifyCreditLog(await exportCreditLog([], key))).toMatchObject({
      count: 0,
      credit: 0,
      cid: '',
    })
  })

  it('rejects a log with an entry removed from the middle', async () => {
    const f = decode(good)
    f.entries.splice(2, 1)
    expect(await failure(encode(f))).toMatch(/removed|chain is broken/)
    await relink(f, 2) // even re-linked, the signed head no longer matches
    expect(await failure(encode(f))).toMatch(/head\.count|head\.cid/)
  })

  it('rejects a log with the last entry dropped, even with the head edited to match', async () => {
    const f = decode(good)
    f.entries.pop()
    expect(await failure(encode(f))).toMatch(/head\.count/)
    f.head = { count: 4, credit: 4, runUs: 4006, cid: f.entries.at(-1)!.cid }
    expect(await failure(encode(f))).toMatch(/head signature/)
  })

  it('rejects a changed count or total', async () => {
    for (const change of [{ count: 6 }, { credit: 50 }, { runUs: 99_999 }]) {
      const f = decode(good)
      f.head = { ...f.head, ...change }
      expect(await failure(encode(f))).toMatch(/head\.(count|credit|runUs)/)
    }
    const f = decode(good)
    f.entries[1]!.credit = 10
    expect(await failure(encode(f))).toMatch(/credit must be 1/)
  })

  it('rejects an altered receipt signature, also when the chain is rebuilt around it', async () => {
    const f = decode(good)
    const receipt = fromString(f.entries[3]!.receipt, 'base64')
    receipt[receipt.length - 1]! ^= 0x01 // the signature is the last field of the dag-cbor receipt
    f.entries[3]!.receipt = bytesToString(receipt, 'base64')
    expect(await failure(encode(f))).toMatch(/entries\[3\]\.cid does not match/)
    await relink(f, 3)
    expect(await failure(encode(f))).toMatch(/entries\[3\]\.receipt does not verify/)
  })

  it('rejects a broken link', async () => {
    const f = decode(good)
    f.entries[2]!.prev = f.entries[0]!.cid
    expect(await failure(encode(f))).toMatch(/entries\[2\]\.prev .*chain is broken/)
  })

  it('rejects a receipt counted twice, and a file of another kind', async () => {
    const twice = [...records, await nextCreditEntry(records.at(-1), records[0]!.receipt)]
    expect(await failure(await exportCreditLog(twice, key))).toMatch(/repeats the receipt/)
    expect(await failure(new TextEncoder().encode('{"kind":"something-else","v":1}'))).toMatch(/kind/)
    expect(await failure(Uint8Array.from([0xa1, 0x61]))).toMatch(/JSON/)
  })

  it('is checked by `npm run verify -- <file>`', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pc-credits-'))
    const f = decode(good)
    f.head.count = 4
    writeFileSync(join(dir, 'good.json'), good)
    writeFileSync(join(dir, 'bad.json'), encode(f))
    const verify = (file: string) =>
      spawnSync(process.execPath, ['--import', 'tsx', 'scripts/verify.ts', join(dir, file)], {
        cwd: resolve(import.meta.dirname, '../..'),
        encoding: 'utf8',
      })
    try {
      const ok = verify('good.json')
      expect(ok.status, ok.stderr).toBe(0)
      expect(ok.stdout).toMatch(/valid credit log: 5 signed receipts, credit 5/)
      const bad = verify('bad.json')
      expect(bad.status).toBe(1)
      expect(bad.stderr).toMatch(/INVALID: \S*bad\.json: InvalidCreditLogError: head\.count/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
