/**
 * The store's write batching on real IndexedDB in Chromium: job states group-commit and collapse
 * (a job ending within its hold-back writes only its end), one bad record fails only its own job,
 * and reputation and the credit log write many changes per transaction without losing any.
 */
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { launchBrowser, type TestBrowser } from '../helpers/chromium.ts'
import { type DevServer, startViteServer } from '../helpers/vite-server.ts'

let server: DevServer
let browser: TestBrowser
let page: Page

beforeAll(async () => {
  server = await startViteServer()
  browser = await launchBrowser()
  page = await browser.newPage()
  await page.goto(`${server.url}/test/pages/store.html`)
  await page.waitForSelector('body[data-ready="true"]', { timeout: 60_000 })
}, 90_000)

afterAll(async () => {
  await browser?.close()
  await server?.close()
})

const JOB_STORES = 'jobInputs+jobs+pending'

describe('job state writes', () => {
  it('a job ending within its hold-back writes its end only, in one transaction', async () => {
    const r = await page.evaluate(async (JOB_STORES) => {
      const store = await window.__store.openStore('t-collapse')
      const rec = (status: 'running' | 'verified') => window.__store.jobRecord('j1', status)
      window.__writes = {}
      const begin = store.saveJobState(
        rec('running'),
        { id: 'j1', createdAt: 1, state: { s: 1 } },
        { id: 'j1', inputs: new Uint8Array(16384) },
        { deferMs: 200 },
      )
      await new Promise((r) => setTimeout(r, 20))
      const before = await store.listPending()
      await Promise.all([begin, store.saveJobState(rec('verified'), null)])
      const out = {
        before: before.length,
        pending: (await store.listPending()).length,
        inputs: (await store.getJobInputs('j1')) ?? null,
        status: (await store.getJob('j1'))?.status,
        txs: window.__writes[JOB_STORES] ?? 0,
      }
      store.stop()
      return out
    }, JOB_STORES)
    expect(r).toEqual({ before: 0, pending: 0, inputs: null, status: 'verified', txs: 1 })
  })

  it('a held-back job is on record after its hold-back; its end deletes its state ~2 s later', async () => {
    const r = await page.evaluate(async () => {
      const store = await window.__store.openStore('t-held')
      const rec = window.__store.jobRecord('j2', 'running')
      const t0 = performance.now()
      await store.saveJobState(
        rec,
        { id: 'j2', createdAt: 1, state: { s: 1 } },
        { id: 'j2', inputs: [1, 2, 3] },
        { deferMs: 100 },
      )
      const waited = performance.now() - t0
      const held = {
        pending: (await store.listPending()).map((p) => p.id),
        inputs: await store.getJobInputs('j2'),
      }
      await store.saveJobState({ ...rec, status: 'failed' }, null)
      const state = async () => ({
        status: (await store.getJob('j2'))?.status,
        pending: (await store.listPending()).length,
        inputs: (await store.getJobInputs('j2')) ?? null,
      })
      const ended = await state()
      await new Promise((r) => setTimeout(r, 2500))
      const after = await state()
      store.stop()
      return { waited, held, ended, after }
    })
    expect(r.waited).toBeGreaterThanOrEqual(95)
    expect(r.held).toEqual({ pending: ['j2'], inputs: { id: 'j2', inputs: [1, 2, 3] } })
    expect(r.ended).toMatchObject({ status: 'failed', pending: 1 }) // clean-up waits for others to join
    expect(r.after).toEqual({ status: 'failed', pending: 0, inputs: null })
  })

  it('jobs that end at different times have their state deleted in one clean-up commit', async () => {
    const r = await page.evaluate(async (JOB_STORES) => {
      const store = await window.__store.openStore('t-stagger')
      const ids = ['s0', 's1', 's2', 's3']
      await Promise.all(
        ids.map((id, i) =>
          store.saveJobState(
            window.__store.jobRecord(id, 'running', i),
            { id, createdAt: i, state: i },
            { id, inputs: i },
          ),
        ),
      )
      window.__writes = {}
      for (const [i, id] of ids.entries()) {
        if (i > 0) await new Promise((r) => setTimeout(r, 300)) // ends 0.3 s apart, within one 2 s delay
        await store.saveJobState(window.__store.jobRecord(id, 'verified', i), null)
      }
      const endTxs = window.__writes[JOB_STORES] ?? 0
      const pendingBefore = (await store.listPending()).length
      await new Promise((r) => setTimeout(r, 2500))
      const out = {
        endTxs,
        pendingBefore,
        cleanupTxs: (window.__writes[JOB_STORES] ?? 0) - endTxs,
        pendingAfter: (await store.listPending()).length,
        inputsAfter: (await Promise.all(ids.map((id) => store.getJobInputs(id)))).filter(Boolean).length,
      }
      store.stop()
      return out
    }, JOB_STORES)
    expect(r.endTxs).toBe(4)
    expect(r.pendingBefore).toBe(4)
    expect(r.cleanupTxs).toBe(1) // was one per job, each 2 s after its own end
    expect(r.pendingAfter).toBe(0)
    expect(r.inputsAfter).toBe(0)
  })

  it('a held-back end goes with the next commit that starts; a held-back start waits its turn', async () => {
    const r = await page.evaluate(async (JOB_STORES) => {
      const store = await window.__store.openStore('t-join')
      const rec = (id: string, status: 'running' | 'verified') => window.__store.jobRecord(id, status)
      const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
      await store.saveJobState(
        rec('jb', 'running'),
        { id: 'jb', createdAt: 2, state: 2 },
        { id: 'jb', inputs: 2 },
      )
      window.__writes = {}
      // ja's start and jb's end are both held back a minute
      void store.saveJobState(
        rec('ja', 'running'),
        { id: 'ja', createdAt: 1, state: 1 },
        { id: 'ja', inputs: 1 },
        { deferMs: 60_000 },
      )
      let bEnded = false
      const bEnd = store
        .saveJobState(rec('jb', 'verified'), null, undefined, { deferMs: 60_000 })
        .then(() => {
          bEnded = true
        })
      await sleep(100)
      const endedBeforeC = bEnded
      // jc's write, due now, starts a commit
      await store.saveJobState(
        rec('jc', 'running'),
        { id: 'jc', createdAt: 3, state: 3 },
        { id: 'jc', inputs: 3 },
      )
      await Promise.race([bEnd, sleep(3000)])
      const out = {
        endedBeforeC,
        bEnded,
        txs: window.__writes[JOB_STORES] ?? 0,
        b: (await store.getJob('jb'))?.status,
        a: (await store.getJob('ja'))?.status ?? null,
        pending: (await store.listPending()).map((p) => p.id).sort(),
      }
      await store.flushJobStates() // ja's start goes now: nothing is left queued
      store.stop()
      return out
    }, JOB_STORES)
    expect(r.endedBeforeC).toBe(false)
    expect(r.bEnded).toBe(true)
    expect(r.txs).toBe(1) // jc's commit carried jb's end
    expect(r.b).toBe('verified')
    expect(r.a).toBeNull() // not written: its hold-back is not over
    expect(r.pending).toEqual(['jb', 'jc']) // jb's state goes with its clean-up
  })

  it('writes made together share one transaction, and a bad record fails only its own job', async () => {
    const r = await page.evaluate(async (JOB_STORES) => {
      const store = await window.__store.openStore('t-group')
      const rec = (i: number, status: 'running' | 'verified') => window.__store.jobRecord(`g${i}`, status, i)
      window.__writes = {}
      await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          store.saveJobState(
            rec(i, 'running'),
            { id: `g${i}`, createdAt: i, state: i },
            { id: `g${i}`, inputs: i },
          ),
        ),
      )
      const begins = window.__writes[JOB_STORES] ?? 0
      const pendingAfterBegin = (await store.listPending()).length
      window.__writes = {}
      const ends = await Promise.allSettled(
        Array.from({ length: 50 }, (_, i) =>
          // job g7's record cannot be stored (a function is not cloneable)
          store.saveJobState({ ...rec(i, 'verified'), ...(i === 7 ? { bad: () => 1 } : {}) }, null),
        ),
      )
      const endTxs = window.__writes[JOB_STORES] ?? 0
      const out = {
        begins,
        pendingAfterBegin,
        failed: ends.flatMap((e, i) =>
          e.status === 'rejected' ? [`g${i}: ${(e.reason as Error).name}`] : [],
        ),
        endTxs,
        pendingBeforeCleanup: (await store.listPending()).length,
        cleanupTxs: await store.flushJobStates().then(() => (window.__writes[JOB_STORES] ?? 0) - endTxs),
        pendingLeft: (await store.listPending()).map((p) => p.id),
        verified: (await store.listJobs(100)).filter((j) => j.status === 'verified').length,
      }
      store.stop()
      return out
    }, JOB_STORES)
    expect(r.begins).toBe(1)
    expect(r.pendingAfterBegin).toBe(50)
    expect(r.failed).toEqual(['g7: DataCloneError'])
    expect(r.pendingBeforeCleanup).toBe(50)
    expect(r.cleanupTxs).toBe(1) // 49 jobs' deletes in one transaction
    expect(r.pendingLeft).toEqual(['g7']) // its state stays: a reload resumes it
    expect(r.verified).toBe(49)
    expect(r.endTxs).toBeLessThanOrEqual(51) // one shared attempt, then one each
  })

  it('flushJobStates starts held-back writes at once', async () => {
    const r = await page.evaluate(async () => {
      const store = await window.__store.openStore('t-flush')
      const t0 = performance.now()
      const held = window.__store.startJob(store, 'f1', { deferMs: 60_000 })
      await store.flushJobStates()
      await held
      const ms = performance.now() - t0
      const pending = (await store.listPending()).length
      store.stop()
      return { ms, pending }
    })
    expect(r.pending).toBe(1)
    expect(r.ms).toBeLessThan(10_000)
  })
})

describe('forced flush', () => {
  it('flushJobStates resolves while other jobs keep writing, and deletes ended state at once', async () => {
    const r = await page.evaluate(async () => {
      const store = await window.__store.openStore('t-busy')
      const { jobRecord, startJob } = window.__store
      // j-ended: on record with its state, then ended (its clean-up would wait 2 s)
      await startJob(store, 'j-ended')
      await store.saveJobState(jobRecord('j-ended', 'verified'), null)
      const held = startJob(store, 'j-held', { deferMs: 60_000 })
      // other jobs write progress without pause, as a busy requester does
      let busy = true
      let writes = 0
      const writer = (async () => {
        while (busy) {
          const id = `b${writes++ % 5}`
          await store.saveJobState(jobRecord(id, 'running'), { id, createdAt: 1, state: writes }, undefined, {
            relaxed: true,
          })
        }
      })()
      await new Promise((r) => setTimeout(r, 50))
      const t0 = performance.now()
      await store.flushJobStates()
      const ms = performance.now() - t0
      const pending = (await store.listPending()).map((p) => p.id)
      busy = false
      await writer
      await held
      store.stop()
      return { ms, writes, held: pending.includes('j-held'), ended: pending.includes('j-ended') }
    })
    expect(r.writes).toBeGreaterThan(5) // the writer really was busy meanwhile
    expect(r.ms).toBeLessThan(2000)
    expect(r.held).toBe(true)
    expect(r.ended).toBe(false)
  })
})

describe('leftover state', () => {
  it("discardJobState deletes an ended job's state and leaves its record as it is", async () => {
    const r = await page.evaluate(async () => {
      const store = await window.__store.openStore('t-discard')
      const { jobRecord, startJob } = window.__store
      await startJob(store, 'd1')
      // as after a reload that came before the 2 s clean-up: final record and state side by side
      await store.saveJobState(jobRecord('d1', 'verified'), { id: 'd1', createdAt: 1, state: 2 })
      const before = (await store.listPending()).length
      window.__writes = {}
      store.discardJobState('d1')
      await store.flushJobStates()
      const out = {
        before,
        after: (await store.listPending()).length,
        inputs: (await store.getJobInputs('d1')) ?? null,
        status: (await store.getJob('d1'))?.status,
        writes: window.__writes,
      }
      store.stop()
      return out
    })
    expect(r).toEqual({
      before: 1,
      after: 0,
      inputs: null,
      status: 'verified',
      writes: { 'jobInputs+jobs+pending': 1 },
    })
  })
})

describe('job history', () => {
  it('pruneJobs deletes ended records past the newest N, and never a pending job', async () => {
    const r = await page.evaluate(async () => {
      const store = await window.__store.openStore('t-prune')
      const { jobRecord, startJob } = window.__store
      await startJob(store, 'old-running') // the oldest (submitted at 1), still resumable
      for (let i = 0; i < 12; i++) await store.putJob(jobRecord(`j${i}`, 'verified', 10 + i))
      const deleted = await store.pruneJobs(5)
      const again = await store.pruneJobs(5)
      const left = (await store.listJobs(100)).map((j) => j.id)
      const pending = (await store.listPending()).map((p) => p.id)
      store.stop()
      return { deleted, again, left, pending }
    })
    expect(r.deleted).toBe(7) // j0 … j6
    expect(r.again).toBe(0)
    expect(r.left).toEqual(['j11', 'j10', 'j9', 'j8', 'j7', 'old-running'])
    expect(r.pending).toEqual(['old-running'])
  })
  it('pruneJobs keeps the newest records within a byte budget, the newest always, and never a pending job', async () => {
    const r = await page.evaluate(async () => {
      const store = await window.__store.openStore('t-prune-bytes')
      const { jobRecord, startJob } = window.__store
      await startJob(store, 'old-running') // the oldest, still resumable
      const sized = (id: string, at: number, kib: number) => ({
        ...jobRecord(id, 'verified', at),
        record: new Uint8Array(kib * 1024),
      })
      // Oldest first: j0 … j5 of 100 KiB, then a 600 KiB one.
      for (let i = 0; i < 6; i++) await store.putJob(sized(`j${i}`, 10 + i, 100))
      await store.putJob(sized('big', 20, 600))
      // The newest: still running, so it neither counts toward the budget nor goes.
      const id = 'new-running'
      await store.saveJobState(
        jobRecord(id, 'running', 30),
        { id, createdAt: 30, state: 1 },
        { id, inputs: 1 },
      )
      const bytes = (await store.getJob('big'))?.bytes
      const first = await store.pruneJobs(100, 1000 * 1024) // big + j5 … j2 fit; j1, j0 do not
      const afterFirst = (await store.listJobs(100)).map((j) => j.id)
      const second = await store.pruneJobs(100, 100 * 1024) // big alone is over: kept, as the newest ended
      const left = (await store.listJobs(100)).map((j) => j.id)
      store.stop()
      return { bytes, first, afterFirst, second, left }
    })
    expect(r.bytes).toBe(600 * 1024)
    expect(r.first).toBe(2)
    expect(r.afterFirst).toEqual(['new-running', 'big', 'j5', 'j4', 'j3', 'j2', 'old-running'])
    expect(r.second).toBe(4)
    expect(r.left).toEqual(['new-running', 'big', 'old-running'])
  })

  it('upgrading a version 3 database sizes its job records, so pruning sees them', async () => {
    const r = await page.evaluate(async () => {
      const name = 't-upgrade-v3'
      // The version 3 schema's jobs store, with two records that have no `bytes`.
      await new Promise<void>((ok, fail) => {
        const req = indexedDB.open(name, 3)
        req.onupgradeneeded = () => {
          const db = req.result
          db.createObjectStore('jobs', { keyPath: 'id' }).createIndex('submittedAt', 'submittedAt')
          for (const s of ['identity', 'settings']) db.createObjectStore(s)
          db.createObjectStore('reputation', { keyPath: 'peer' })
          db.createObjectStore('credits', { keyPath: 'seq' })
          db.createObjectStore('models', { keyPath: 'cid' }).createIndex('lastUsed', 'lastUsed')
          db.createObjectStore('modelChunks', { keyPath: ['cid', 'index'] }).createIndex('cid', 'cid')
          db.createObjectStore('pending', { keyPath: 'id' }).createIndex('createdAt', 'createdAt')
          db.createObjectStore('jobInputs', { keyPath: 'id' })
          const jobs = req.transaction!.objectStore('jobs')
          for (const [id, at] of [
            ['a', 1],
            ['b', 2],
          ] as const)
            jobs.put({ ...window.__store.jobRecord(id, 'verified', at), receipt: new Uint8Array(10) })
        }
        req.onsuccess = () => {
          req.result.close()
          ok()
        }
        req.onerror = () => fail(req.error)
      })
      const store = await window.__store.openStore(name)
      const sizes = [(await store.getJob('a'))?.bytes, (await store.getJob('b'))?.bytes]
      const deleted = await store.pruneJobs(1)
      const left = (await store.listJobs(10)).map((j) => j.id)
      store.stop()
      return { sizes, deleted, left }
    })
    expect(r).toEqual({ sizes: [10, 10], deleted: 1, left: ['b'] })
  })
})

describe('reputation and credits', () => {
  it('reputation writes many changes in one transaction and keeps every count', async () => {
    const r = await page.evaluate(async () => {
      const store = await window.__store.openStore('t-rep')
      const rep = await window.__store.createReputation(store)
      window.__writes = {}
      await Promise.all(
        Array.from({ length: 30 }, (_, i) => rep.record(`peer-${i % 3}`, i % 10 ? 'valid' : 'invalid')),
      )
      const txs = window.__writes.reputation ?? 0
      const again = await window.__store.createReputation(store) // as a reloaded page reads it
      await rep.record('peer-0', 'timedOut')
      await rep.flush()
      const third = await window.__store.createReputation(store)
      store.stop()
      return { txs, stored: again.get('peer-1'), timedOut: third.get('peer-0').timedOut }
    })
    expect(r.txs).toBe(1)
    expect(r.stored).toMatchObject({ valid: 9, invalid: 1 })
    expect(r.timedOut).toBe(1)
  })

  it('two credit logs on one store append 60 receipts in few transactions, as one valid chain', async () => {
    const r = await page.evaluate(async () => {
      const { openStore, createCredits, generateKeyPair, verifyCreditLog, receiptFor } = window.__store
      const store = await openStore('t-credits')
      const privateKey = await generateKeyPair('Ed25519')
      // two tabs' logs over one database: the same store name, so the same Web Lock
      const a = await createCredits({ store, storeName: 't-credits', privateKey })
      const b = await createCredits({ store, storeName: 't-credits', privateKey })
      const receipts = await Promise.all(Array.from({ length: 60 }, (_, i) => receiptFor(i, privateKey)))
      window.__writes = {}
      const recs = await Promise.all(receipts.map((r, i) => (i % 3 ? a : b).append(r)))
      const txs = window.__writes.credits ?? 0
      const summary = await verifyCreditLog(await a.export())
      const seqs = recs.map((x) => x.seq).sort((x, y) => x - y)
      const out = { txs, total: a.total, entries: summary.count, seqs: seqs.join() }
      a.stop()
      b.stop()
      store.stop()
      return out
    })
    expect(r.entries).toBe(60)
    expect(r.seqs).toBe(Array.from({ length: 60 }, (_, i) => i).join())
    expect(r.total).toBeGreaterThanOrEqual(40) // a's own view: at least its own appends
    expect(r.txs).toBeLessThan(30)
  })
})
