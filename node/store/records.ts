/**
 * The small stores: settings and identities (a file per key), reputation (one file: a put of many
 * peers lands whole), and credits (a file per append, so an append of several entries lands whole).
 */
import type { Store } from '../../src/store/db.ts'
import type { CreditRecord, ReputationRecord } from '../../src/store/schema.ts'
import { encodeValue } from './codec.ts'
import type { Ctx } from './context.ts'
import { keyName, list, writeAtomic, writeBatch } from './files.ts'
import { readRecord } from './jobs.ts'

export type RecordsPart = Pick<
  Store,
  | 'getSetting'
  | 'putSetting'
  | 'getIdentity'
  | 'putIdentity'
  | 'allReputation'
  | 'putReputations'
  | 'clearReputation'
  | 'lastCredit'
  | 'addCredits'
  | 'listCredits'
  | 'recentCredits'
>

const byPeer = (a: ReputationRecord, b: ReputationRecord) => (a.peer < b.peer ? -1 : a.peer > b.peer ? 1 : 0)

function checkKey(ok: boolean, what: string): void {
  if (!ok) throw new DOMException(`${what} is not a valid key`, 'DataError')
}

/** Reads every credit file once, for the seq index an append is checked against. */
export async function loadCreditIndex(ctx: Ctx): Promise<Map<number, string>> {
  const files = new Map<number, string>() // seq → the file holding it
  for (const name of await list(ctx.path('credits'))) {
    const recs = await readRecord<CreditRecord[]>(ctx.path('credits', name))
    // A file that decodes to something else (a damaged disk, a hand edit) is skipped, not fatal.
    if (Array.isArray(recs)) for (const r of recs) if (Number.isSafeInteger(r?.seq)) files.set(r.seq, name)
  }
  return files
}

export function recordFiles(ctx: Ctx, credits: Map<number, string>): RecordsPart {
  const settingPath = (key: string) => ctx.path('settings', `${keyName(key)}.cbor`)
  const identityPath = (slot: string) => ctx.path('identity', `${keyName(slot)}.cbor`)
  const reputationPath = ctx.path('reputation.cbor')
  const records = <T extends object>(x: unknown): T[] =>
    Array.isArray(x) ? x.filter((r): r is T => r != null && typeof r === 'object') : []
  const readReputation = async () =>
    records<ReputationRecord>(await readRecord(reputationPath)).filter((r) => typeof r.peer === 'string')
  const readCredits = async (name: string) =>
    records<CreditRecord>(await readRecord(ctx.path('credits', name))).filter((r) =>
      Number.isSafeInteger(r.seq),
    )

  return {
    getSetting: <T>(key: string) => ctx.run('settings', () => readRecord<T>(settingPath(key))),
    async putSetting(key, value) {
      checkKey(typeof key === 'string', 'a setting key')
      // undefined reads back as a missing setting: the same to getSetting.
      const data = value === undefined ? null : encodeValue(value)
      await ctx.run('settings', () => writeBatch([{ path: settingPath(key), data }]))
    },
    getIdentity: (slot) =>
      ctx.run(
        'identity',
        async () => (await readRecord<{ privateKey: Uint8Array }>(identityPath(slot)))?.privateKey,
      ),
    async putIdentity(slot, privateKey) {
      checkKey(typeof slot === 'string', 'an identity slot')
      const data = encodeValue({ privateKey, createdAt: Date.now() })
      await ctx.run('identity', () => writeAtomic(identityPath(slot), data, { mode: 0o600 }))
    },
    allReputation: () => ctx.run('reputation', readReputation),
    async putReputations(recs) {
      for (const r of recs) checkKey(typeof r?.peer === 'string', 'a reputation record without a peer')
      encodeValue(recs) // refuses what cannot be stored before anything is queued
      await ctx.run('reputation', async () => {
        const all = new Map((await readReputation()).map((r) => [r.peer, r]))
        for (const r of recs) all.set(r.peer, r)
        await writeAtomic(reputationPath, encodeValue([...all.values()].sort(byPeer)))
      })
    },
    clearReputation: () => ctx.run('reputation', () => writeBatch([{ path: reputationPath, data: null }])),
    ...creditFiles(ctx, credits, readCredits),
  }
}

/** The credit log's files: one per append, named by its first seq. */
function creditFiles(
  ctx: Ctx,
  credits: Map<number, string>,
  readCredits: (name: string) => Promise<CreditRecord[]>,
): Pick<RecordsPart, 'lastCredit' | 'addCredits' | 'listCredits' | 'recentCredits'> {
  return {
    lastCredit: () =>
      ctx.run('credits', async () => {
        if (credits.size === 0) return undefined
        const seq = [...credits.keys()].reduce((a, b) => Math.max(a, b))
        return (await readCredits(credits.get(seq)!)).find((r) => r.seq === seq)
      }),
    async addCredits(recs) {
      for (const r of recs) checkKey(Number.isFinite(r?.seq), 'a credit seq')
      const data = encodeValue(recs)
      await ctx.run('credits', async () => {
        const seqs = recs.map((r) => r.seq)
        const taken = seqs.find((s, i) => credits.has(s) || seqs.indexOf(s) !== i)
        if (taken !== undefined)
          throw new DOMException(
            `credit seq ${taken} is taken (another writer appended first)`,
            'ConstraintError',
          )
        if (recs.length === 0) return
        const name = `${Math.min(...seqs)}.cbor` // unique: every seq is
        await writeAtomic(ctx.path('credits', name), data)
        for (const s of seqs) credits.set(s, name)
      })
    },
    listCredits: () =>
      ctx.run('credits', async () => {
        const out: CreditRecord[] = []
        for (const name of new Set(credits.values())) out.push(...(await readCredits(name)))
        return out.sort((a, b) => a.seq - b.seq)
      }),
    recentCredits: (since) =>
      ctx.run('credits', async () => {
        // Files are named by their first seq and appended in time order: newest first, until one
        // holds an entry older than `since`.
        const names = [...new Set(credits.values())].sort(
          (a, b) => Number.parseInt(b, 10) - Number.parseInt(a, 10),
        )
        const out: CreditRecord[] = []
        for (const name of names) {
          const recs = await readCredits(name)
          out.push(...recs.filter((r) => r.at >= since))
          if (recs.some((r) => r.at < since)) break
        }
        return out.sort((a, b) => a.seq - b.seq)
      }),
  }
}
