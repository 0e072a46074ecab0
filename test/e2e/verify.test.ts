/**
 * Verified results in real tabs over real WebRTC: A requests; B and C are honest; D is an
 * adversary whose misbehaviour a test hook switches at run time.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import catalog from '../../public/models/catalog.json' with { type: 'json' }
import { mlpForward, mlpInput, mlpWeights } from '../../src/shared/mlp.ts'
import { RECEIPT_DOMAIN } from '../../src/trust/receipt.ts'
import { signRecord } from '../../src/trust/signed.ts'
import { peerId, type Swarm, startSwarm, waitForContributors, waitReady } from '../helpers/swarm.ts'

const tiny = catalog.find((e) => e.name === 'mlp-tiny')!
const alt = catalog.find((e) => e.name === 'mlp-tiny-alt')!
const spec = tiny.mlp!
const layers = mlpWeights(spec)

interface Done {
  id: string
  y: number[]
  workers: string[]
}

/** Submits jobs `from..from+n` from tab A; returns the verified outputs (failures are thrown). */
function batch(swarm: Swarm, from: number, n: number, policy: Record<string, unknown>, prefix = 'job') {
  const jobs = Array.from({ length: n }, (_, i) => ({
    id: `${prefix}-${from + i}`,
    x: Array.from(mlpInput(spec, from + i)),
  }))
  return swarm.tabs[0]!.evaluate(
    async ({ jobs, policy }) =>
      Promise.all(
        jobs.map(async ({ id, x }) => {
          const r = await window.__peer.submit(
            'mlp-tiny',
            { x: { dtype: 'float32', dims: [1, 16], data: Float32Array.from(x) } },
            { id, policy },
          )
          return { id, y: Array.from(r.outputs.y!.data as Float32Array), workers: r.workers }
        }),
      ),
    { jobs, policy },
  )
}

/** Counts tab A's job records with `prefix`, by status. (waitForFunction does not await promises.) */
const jobCounts = (page: Page, prefix: string) =>
  page.evaluate(
    (prefix) =>
      window.__peer.jobs(1000).then((js) => {
        const batch = js.filter((j) => j.id.startsWith(prefix))
        return { total: batch.length, verified: batch.filter((j) => j.status === 'verified').length }
      }),
    prefix,
  )

async function waitForJobs(
  page: Page,
  prefix: string,
  done: (c: { total: number; verified: number }) => boolean,
  timeoutMs = 60_000,
) {
  const until = Date.now() + timeoutMs
  for (;;) {
    const c = await jobCounts(page, prefix)
    if (done(c)) return c
    if (Date.now() > until) {
      const stuck = await page.evaluate(
        (prefix) =>
          window.__peer
            .jobs(1000)
            .then((js) => js.filter((j) => j.id.startsWith(prefix) && j.status !== 'verified').slice(0, 3)),
        prefix,
      )
      throw new Error(
        `timed out waiting for ${prefix} jobs: ${JSON.stringify(c)}; e.g. ${JSON.stringify(stuck)}`,
      )
    }
    await new Promise((r) => setTimeout(r, 25))
  }
}

/** D's reputation and how its replicas in a batch ended, for a failure message. */
const replicasOf = (page: Page, peer: string, prefix: string) =>
  page.evaluate(
    async ({ peer, prefix }) => {
      const counts: Record<string, number> = {}
      for (const j of await window.__peer.jobs(1000)) {
        if (!j.id.startsWith(prefix)) continue
        for (const r of j.replicas ?? []) {
          if (r.peer !== peer) continue
          const k = `${r.status}${r.error ? `: ${r.error}` : ''}`
          counts[k] = (counts[k] ?? 0) + 1
        }
      }
      const seen = window.__peer.peers().find((p) => p.id === peer)
      const view = seen && {
        direct: seen.direct,
        slots: seen.advert.slots,
        maxSlots: seen.advert.maxSlots,
        contributing: seen.advert.contributing,
        models: seen.advert.models.length,
        ageMs: Date.now() - seen.seenAt,
      }
      return JSON.stringify({ reputation: window.__peer.reputation.get(peer), replicas: counts, view })
    },
    { peer, prefix },
  )

/** Runs `npm run verify`'s script on bytes written to a temp file. */
async function verifyCli(bytes: Uint8Array): Promise<{ code: number; out: string; err: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'pc-verify-'))
  const file = join(dir, 'record.cbor')
  await writeFile(file, bytes)
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'scripts/verify.ts', file], (error, out, err) => {
      void rm(dir, { recursive: true, force: true })
      resolve({ code: error ? Number(error.code ?? 1) : 0, out, err })
    })
  })
}

const seedOf = (id: string) => Number(id.split('-').pop())

/** Every accepted output equals the JS reference: zero wrong results accepted. */
function expectCorrect(done: Done[]) {
  for (const d of done) {
    const want = mlpForward(spec, layers, mlpInput(spec, seedOf(d.id)))
    expect(Math.max(...d.y.map((v, i) => Math.abs(v - want[i]!)))).toBeLessThan(1e-4)
  }
}

const setMode = (swarm: Swarm, mode: string | undefined, extra: Record<string, unknown> = {}) =>
  swarm.tabs[3]!.evaluate(
    ({ mode, extra }) => {
      Object.assign(
        (globalThis as unknown as { __peerComputeTestHooks: Record<string, unknown> }).__peerComputeTestHooks,
        {
          adversary: mode,
          ...extra,
        },
      )
    },
    { mode, extra },
  )

describe('verification by quorum', () => {
  let swarm: Swarm
  let ids: string[]
  const resetReputation = () => swarm.tabs[0]!.evaluate(() => window.__peer.reputation.reset())
  const trusted = (id: string) => swarm.tabs[0]!.evaluate((id) => window.__peer.reputation.trusted(id), id)

  beforeAll(async () => {
    swarm = await startSwarm({ tabs: 3, testHooks: true })
    await swarm.openTab('', { testHooks: { adversary: 'always-wrong', otherModel: alt.cid } })
    ids = await Promise.all(swarm.tabs.map(peerId))
    for (const t of swarm.tabs.slice(1)) await t.evaluate(() => window.__peer.setContributing(true))
    await waitForContributors(swarm.tabs[0]!, ids.slice(1))
    // Warm each contributor's engine with an honest job first: a cold start under this load can
    // take D 10 s, long enough for B and C to finish a batch before D has been judged 3 times.
    await setMode(swarm, undefined)
    await swarm.tabs[0]!.evaluate(
      (peers) =>
        Promise.all(
          peers.map((peer, i) =>
            window.__peer.submit(
              'mlp-tiny',
              { x: { dtype: 'float32', dims: [1, 16], data: new Float32Array(16).fill(i) } },
              { id: `warm-${i}`, peer },
            ),
          ),
        ),
      ids.slice(1),
    )
    await setMode(swarm, 'always-wrong')
    await resetReputation()
  })
  afterAll(() => swarm?.stop())

  it('r=3, q=2: 200 jobs with a liar among 3 contributors accept no wrong result', async () => {
    const done = await batch(swarm, 0, 200, { redundancy: 3, quorum: 2, adaptive: false })
    expect(done).toHaveLength(200)
    expectCorrect(done)
    expect(done.every((d) => !d.workers.includes(ids[3]!))).toBe(true)
    // D's replicas that ended after their job's verdict are judged as they end: wait for the last.
    const untrusted = await swarm.tabs[0]!.waitForFunction(
      (id) => !window.__peer.reputation.trusted(id),
      ids[3]!,
      { timeout: 30_000 },
    )
      .then(() => true)
      .catch(() => false)
    if (!untrusted)
      throw new Error(`D is still trusted: ${await replicasOf(swarm.tabs[0]!, ids[3]!, 'job-')}`)
    expect(await trusted(ids[1]!)).toBe(true)
  })

  it('the verify CLI accepts an exported record and rejects tampered ones', async () => {
    const bytes = await swarm.tabs[0]!.evaluate(async () => {
      const job = await window.__peer.job('job-0')
      return Array.from(job!.record!)
    })
    const genuine = Uint8Array.from(bytes)
    expect(await verifyCli(genuine)).toMatchObject({ code: 0 })
    const flipped = genuine.slice()
    flipped[flipped.length - 40]! ^= 0x01
    expect(await verifyCli(flipped)).toMatchObject({ code: 1 })
    const rec = dagCbor.decode(genuine) as {
      quorum: number
      members: { receipt: { body: unknown; sig: Uint8Array } }[]
    }
    const other = await generateKeyPair('Ed25519')
    const wrongKey = structuredClone(rec)
    wrongKey.members[0]!.receipt.sig = await signRecord(
      RECEIPT_DOMAIN,
      wrongKey.members[0]!.receipt.body,
      other,
    )
    expect(await verifyCli(dagCbor.encode(wrongKey))).toMatchObject({
      code: 1,
      err: expect.stringContaining('InvalidSignatureError'),
    })
    const short = { ...rec, members: rec.members.slice(0, 1) }
    expect(await verifyCli(dagCbor.encode(short))).toMatchObject({
      code: 1,
      err: expect.stringContaining('QuorumNotMetError'),
    })
  })

  it('r=2, q=2 plus reissue: 200 jobs, the liar is outvoted and then no longer chosen', async () => {
    await resetReputation()
    const done = await batch(swarm, 1000, 200, { redundancy: 2, quorum: 2, adaptive: false })
    expectCorrect(done)
    expect(done.every((d) => d.workers.length === 2 && !d.workers.includes(ids[3]!))).toBe(true)
    expect(await trusted(ids[3]!)).toBe(false)
  })

  for (const [mode, errorName] of [
    ['forged-signature', 'InvalidSignatureError'],
    ['replay', 'InvalidReceiptError'],
  ] as const) {
    it(`rejects ${mode} receipts and completes the jobs elsewhere`, async () => {
      await resetReputation()
      await setMode(swarm, mode)
      const done = await batch(swarm, 2000, 12, { redundancy: 3, quorum: 2, adaptive: false }, mode)
      expectCorrect(done)
      const recs = await swarm.tabs[0]!.evaluate(
        (prefix) => window.__peer.jobs(1000).then((js) => js.filter((j) => j.id.startsWith(prefix))),
        mode,
      )
      const fromD = recs.flatMap((j) => j.replicas ?? []).filter((r) => r.peer === ids[3])
      expect(fromD.length).toBeGreaterThan(0)
      // A replay needs an earlier job to replay, so not every D replica is forged; every forged
      // one was caught, including those judged after the quorum had already verified the job.
      const forged = fromD.filter((r) => r.status === 'forged')
      expect(forged.length).toBeGreaterThan(0)
      expect(forged.every((r) => r.error?.startsWith(errorName))).toBe(true)
    })
  }

  for (const mode of ['different-model', 'never-answer', 'drop-connection', 'slow'] as const) {
    it(`completes every job correctly when a contributor is ${mode}`, async () => {
      await resetReputation()
      await setMode(swarm, mode, { slowMs: 3000 })
      const policy = { redundancy: 2, quorum: 2, adaptive: false, replicaTimeoutMs: 1500 }
      const done = await batch(swarm, 3000, 10, policy, mode)
      expectCorrect(done)
      expect(done.every((d) => !d.workers.includes(ids[3]!))).toBe(true)
      await swarm.tabs[0]!.waitForFunction(
        (d) => window.__peer.peers().some((p) => p.id === d && p.direct),
        ids[3],
        {
          timeout: 20_000,
        },
      )
    })
  }

  it('uses the requester itself for one replica only when allowSelf is set', async () => {
    await setMode(swarm, undefined)
    const own = await batch(
      swarm,
      6000,
      4,
      { redundancy: 2, quorum: 2, adaptive: false, allowSelf: true },
      'self',
    )
    expectCorrect(own)
    expect(own.every((d) => d.workers.includes(ids[0]!) && d.workers.length === 2)).toBe(true)
    const others = await batch(swarm, 6100, 4, { redundancy: 2, quorum: 2, adaptive: false }, 'noself')
    expect(others.every((d) => !d.workers.includes(ids[0]!))).toBe(true)
  })

  it('every job completes when a contributor tab closes mid-batch', async () => {
    await setMode(swarm, undefined)
    await resetReputation()
    const a = swarm.tabs[0]!
    const c = swarm.tabs[2]!
    const pending = batch(swarm, 4000, 60, { redundancy: 2, quorum: 2, adaptive: false }, 'lost')
    // Jobs are quick: watch C itself, and close it while it runs one of them.
    await c.waitForFunction(() => window.__peer.running().length > 0, null, { polling: 1, timeout: 60_000 })
    await c.close() // C goes away with replicas in flight
    const done = await pending
    expect(done).toHaveLength(60)
    expectCorrect(done)
    const recs = await a.evaluate(() =>
      window.__peer.jobs(1000).then((js) => js.filter((j) => j.id.startsWith('lost'))),
    )
    // Some replica on C was cut off and reissued elsewhere: the close really was mid-batch.
    expect(recs.some((r) => r.replicas?.some((x) => x.peer === ids[2] && x.status !== 'ok'))).toBe(true)
  })

  it('a requester reloaded mid-batch finishes every job exactly once', async () => {
    const a = swarm.tabs[0]!
    const jobs = Array.from({ length: 40 }, (_, i) => ({
      id: `reload-${5000 + i}`,
      x: Array.from(mlpInput(spec, 5000 + i)),
    }))
    await a.evaluate((jobs) => {
      for (const { id, x } of jobs) {
        void window.__peer
          .submit(
            'mlp-tiny',
            { x: { dtype: 'float32', dims: [1, 16], data: Float32Array.from(x) } },
            {
              id,
              policy: { redundancy: 2, quorum: 2, adaptive: false },
            },
          )
          .catch(() => {}) // the page goes away: the resumed page finishes these
      }
    }, jobs)
    // The batch is accepted once every job is persisted; reload as soon as some have finished.
    const before = await waitForJobs(a, 'reload', (c) => c.total === 40 && c.verified > 0)
    expect(before.verified).toBeLessThan(40) // the reload really is mid-batch
    await a.reload()
    await waitReady(a)
    expect(await peerId(a)).toBe(ids[0])
    await waitForJobs(a, 'reload', (c) => c.verified === 40)
    const recs = await a.evaluate(() =>
      window.__peer.jobs(1000).then((js) => js.filter((j) => j.id.startsWith('reload'))),
    )
    expect(new Set(recs.map((r) => r.id)).size).toBe(40)
    expect(recs.filter((r) => r.status !== 'verified' || r.workers?.length !== 2)).toEqual([])
    // Submitting an id again returns the stored outcome instead of running it twice.
    const again = await batch(swarm, 5000, 40, { redundancy: 2, quorum: 2, adaptive: false }, 'reload')
    expectCorrect(again)
    const after = await a.evaluate(() =>
      window.__peer.jobs(1000).then((js) => js.filter((j) => j.id.startsWith('reload'))),
    )
    expect(after.map((r) => r.replicas?.length)).toEqual(recs.map((r) => r.replicas?.length))
  })
})
