/**
 * The Node peer's file store against the Store contract (src/store/*.ts): every method, reopening,
 * the lock, crash leftovers, and the services that run over it (journal, model cache, credits).
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterEach, describe, expect, it } from 'vitest'
import { TEMP_PREFIX } from '../../node/store/files.ts'
import { createFileStore, type FileStore } from '../../node/store/index.ts'
import { createStoreJournal, type JobSpec, jobRecord as journalRecord } from '../../src/jobs/journal.ts'
import type { QuorumState } from '../../src/jobs/quorum.ts'
import { createModelCache } from '../../src/models/store.ts'
import { modelCid } from '../../src/shared/cid.ts'
import type { JobRecord, JobStatus } from '../../src/store/db.ts'
import { verifyCreditLog } from '../../src/trust/credit-log.ts'
import { createCredits, type Locks } from '../../src/trust/credits.ts'
import { policyFor } from '../../src/trust/policy.ts'
import { type Receipt, signReceipt } from '../../src/trust/receipt.ts'
import { createReputation } from '../../src/trust/reputation.ts'

const dirs: string[] = []
const open: FileStore[] = []
afterEach(async () => {
  for (const s of open.splice(0)) s.stop()
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

async function tmp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'file-store-'))
  dirs.push(d)
  return d
}
async function openAt(dir: string): Promise<FileStore> {
  const s = await createFileStore(dir)
  open.push(s)
  return s
}
const fresh = async () => openAt(await tmp())
/** Closes and opens the same folder again, as a restarted process does. */
async function reopen(s: FileStore): Promise<FileStore> {
  await s.shutdown()
  return openAt(s.dir)
}
/** Every file under `dir`, relative. */
async function files(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }))
    if (e.isFile()) out.push(relative(dir, join(e.parentPath, e.name)))
  return out.sort()
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const errName = (p: Promise<unknown>) =>
  p.then(
    () => 'resolved',
    (e: Error) => e.name,
  )

const rec = (id: string, status: JobStatus, submittedAt = 1, extra: Partial<JobRecord> = {}): JobRecord => ({
  id,
  model: 'm',
  modelName: 'm',
  status,
  submittedAt,
  verified: status === 'verified',
  ...extra,
})
const startJob = (s: FileStore, id: string, createdAt = 1, opts?: { deferMs?: number }) =>
  s.saveJobState(
    rec(id, 'running', createdAt),
    { id, createdAt, state: { n: 1 } },
    { id, inputs: [id] },
    opts,
  )

describe('settings and identity', () => {
  it('round-trip values with bytes exactly, across a reopen', async () => {
    let s = await fresh()
    const value = { a: 1.5, b: 'x', c: [true, null], d: new Uint8Array([0, 255, 7]), e: { f: -3 } }
    await s.putSetting('model-hub/quota', 42)
    await s.putSetting('calibration/bafk:1', value)
    await s.putIdentity('peer', new Uint8Array([9, 8, 7]))
    s = await reopen(s)
    expect(await s.getSetting('model-hub/quota')).toBe(42)
    expect(await s.getSetting('calibration/bafk:1')).toEqual(value)
    expect(await s.getSetting('missing')).toBeUndefined()
    const key = await s.getIdentity('peer')
    expect(key).toBeInstanceOf(Uint8Array)
    expect([...key!]).toEqual([9, 8, 7])
    expect(await s.getIdentity('other')).toBeUndefined()
    await s.putSetting('model-hub/quota', undefined)
    expect(await s.getSetting('model-hub/quota')).toBeUndefined()
  })

  it('drop undefined properties and refuse what would not come back the same (DataCloneError)', async () => {
    const s = await fresh()
    await s.putSetting('k', { a: 1, gone: undefined })
    expect(await s.getSetting('k')).toEqual({ a: 1 })
    for (const bad of [Number.NaN, { x: Float32Array.of(1) }, { d: new Date() }, () => 1])
      expect(await errName(s.putSetting('k', bad))).toBe('DataCloneError')
    expect(await s.getSetting('k')).toEqual({ a: 1 })
  })

  it('keep every key inside the folder, however it is spelled', async () => {
    const parent = await tmp()
    const s = await openAt(join(parent, 'store'))
    const keys = ['../../escape', '/etc/passwd', '..', 'a/../../b', 'C:\\x', 'x'.repeat(300), 'Aa', 'aA']
    for (const [i, k] of keys.entries()) await s.putSetting(k, i)
    for (const [i, k] of keys.entries()) expect(await s.getSetting(k)).toBe(i)
    expect(await readdir(parent)).toEqual(['store'])
    const names = (await files(s.dir)).filter((f) => f.startsWith('settings'))
    expect(names).toHaveLength(keys.length)
    for (const n of names) expect(n).toMatch(/^settings[/\\](?:[0-9a-f]+|h-[0-9a-f]{64})\.cbor$/)
  })
})

describe('jobs', () => {
  it('putJob/getJob round-trip bytes and size the record; listJobs is newest first, 200 by default', async () => {
    let s = await fresh()
    const receipt = new Uint8Array(new ArrayBuffer(64), 8, 10).fill(3)
    await s.putJob(
      rec('r', 'verified', 5, { receipt, reason: 'ab', replicas: [{ peer: 'p', status: 'ok' }] }),
    )
    s = await reopen(s)
    const got = await s.getJob('r')
    expect(got?.receipt).toEqual(new Uint8Array(10).fill(3))
    expect(got?.receipt?.buffer.byteLength).toBe(10)
    expect(got?.bytes).toBe(10 + 2 * 2 + 2 * 1)
    expect(await s.getJob('nope')).toBeUndefined()
    for (let i = 0; i < 205; i++)
      await s.putJob(rec(`j${String(i).padStart(3, '0')}`, 'verified', 10 + (i % 7)))
    const all = await s.listJobs()
    expect(all).toHaveLength(200)
    const keys = all.map((j) => [j.submittedAt, j.id] as const)
    const sorted = [...keys].sort((a, b) => b[0] - a[0] || (a[1] < b[1] ? 1 : -1))
    expect(keys).toEqual(sorted) // time, then id, both descending
    expect((await s.listJobs(3)).map((j) => j.id)).toEqual(['j202', 'j195', 'j188'])
    expect(await s.listJobs(0)).toEqual([])
  })

  it('pruneJobs keeps the newest N and never deletes a pending job', async () => {
    let s = await fresh()
    await startJob(s, 'old-running')
    for (let i = 0; i < 12; i++) await s.putJob(rec(`j${i}`, 'verified', 10 + i))
    expect(await s.pruneJobs(5)).toBe(7)
    expect(await s.pruneJobs(5)).toBe(0)
    s = await reopen(s)
    expect((await s.listJobs(100)).map((j) => j.id)).toEqual(['j11', 'j10', 'j9', 'j8', 'j7', 'old-running'])
    expect((await s.listPending()).map((p) => p.id)).toEqual(['old-running'])
    expect(await s.pruneJobs(0)).toBe(5) // keep 0: every ended one goes, the pending one stays
    expect((await s.listJobs()).map((j) => j.id)).toEqual(['old-running'])
  })

  it('pruneJobs keeps the newest within a byte budget, the newest ended one whatever its size', async () => {
    const s = await fresh()
    await startJob(s, 'old-running')
    const sized = (id: string, at: number, kib: number) =>
      rec(id, 'verified', at, { record: new Uint8Array(kib * 1024) })
    for (let i = 0; i < 6; i++) await s.putJob(sized(`j${i}`, 10 + i, 100))
    await s.putJob(sized('big', 20, 600))
    await startJob(s, 'new-running', 30)
    expect((await s.getJob('big'))?.bytes).toBe(600 * 1024)
    expect(await s.pruneJobs(100, 1000 * 1024)).toBe(2) // big + j5 … j2 fit; j1, j0 do not
    expect((await s.listJobs(100)).map((j) => j.id)).toEqual([
      'new-running',
      'big',
      'j5',
      'j4',
      'j3',
      'j2',
      'old-running',
    ])
    expect(await s.pruneJobs(100, 100 * 1024)).toBe(4) // big alone is over: kept as the newest ended
    expect((await s.listJobs(100)).map((j) => j.id)).toEqual(['new-running', 'big', 'old-running'])
  })
})

describe('job state (saveJobState)', () => {
  it('a saved state, its inputs and record survive a reopen; pending: null then deletes state and inputs', async () => {
    let s = await fresh()
    await s.saveJobState(
      rec('a', 'running', 2),
      { id: 'a', createdAt: 2, state: { q: new Uint8Array([1, 2]) } },
      { id: 'a', inputs: { x: { data: new Uint8Array([5]) } } },
    )
    await startJob(s, 'b', 1)
    s = await reopen(s)
    expect((await s.getJob('a'))?.status).toBe('running')
    expect(await s.listPending()).toEqual([
      { id: 'b', createdAt: 1, state: { n: 1 } },
      { id: 'a', createdAt: 2, state: { q: new Uint8Array([1, 2]) } },
    ]) // by createdAt
    expect(await s.getJobInputs('a')).toEqual({ id: 'a', inputs: { x: { data: new Uint8Array([5]) } } })
    await s.saveJobState(rec('a', 'verified', 2), null)
    expect((await s.getJob('a'))?.status).toBe('verified')
    await s.flushJobStates() // the clean-up would otherwise wait ~2 s for others to join
    s = await reopen(s)
    expect((await s.listPending()).map((p) => p.id)).toEqual(['b'])
    expect(await s.getJobInputs('a')).toBeUndefined()
    expect(await files(join(s.dir, 'inputs'))).toHaveLength(1)
  })

  it('a job ending within its hold-back writes its end only', async () => {
    const s = await fresh()
    const begin = startJob(s, 'j1', 1, { deferMs: 200 })
    await sleep(20)
    expect(await s.listPending()).toEqual([])
    await Promise.all([begin, s.saveJobState(rec('j1', 'verified'), null)])
    expect(await s.listPending()).toEqual([])
    expect(await s.getJobInputs('j1')).toBeUndefined()
    expect((await s.getJob('j1'))?.status).toBe('verified')
    expect(await files(join(s.dir, 'pending'))).toEqual([])
  })

  it('a bad record fails only its own job, whose state stays', async () => {
    const s = await fresh()
    await Promise.all([0, 1, 2].map((i) => startJob(s, `g${i}`, i)))
    const ends = await Promise.allSettled(
      [0, 1, 2].map((i) =>
        s.saveJobState({ ...rec(`g${i}`, 'verified', i), ...(i === 1 ? { bad: Number.NaN } : {}) }, null),
      ),
    )
    expect(ends.map((e) => e.status)).toEqual(['fulfilled', 'rejected', 'fulfilled'])
    expect(((ends[1] as PromiseRejectedResult).reason as Error).name).toBe('DataCloneError')
    await s.flushJobStates()
    expect((await s.listPending()).map((p) => p.id)).toEqual(['g1'])
  })

  it('discardJobState deletes an ended job’s state and leaves its record', async () => {
    const s = await fresh()
    await startJob(s, 'd1')
    await s.saveJobState(rec('d1', 'verified'), { id: 'd1', createdAt: 1, state: 2 })
    s.discardJobState('d1')
    await s.flushJobStates()
    expect(await s.listPending()).toEqual([])
    expect(await s.getJobInputs('d1')).toBeUndefined()
    expect((await s.getJob('d1'))?.status).toBe('verified')
  })
})

describe('models', () => {
  it('keeps bytes as models/<cid>.onnx; lists, touches and removes bytes, listing and chunks', async () => {
    let s = await fresh()
    const bytes = new Uint8Array(1000).map((_, i) => i % 251)
    const cid = (await modelCid(bytes)).toString()
    await s.putModelAndMeta({ cid, bytes, size: 1000, name: 'tiny', addedAt: 1, lastUsed: 2 })
    expect(new Uint8Array(await readFile(join(s.dir, 'models', `${cid}.onnx`)))).toEqual(bytes)
    await s.putModelChunks([10, 2, 0].map((index) => ({ cid, index, bytes: Uint8Array.of(index) })))
    s = await reopen(s)
    const got = await s.getModel(cid)
    expect(got).toEqual({ cid, bytes, size: 1000, name: 'tiny', addedAt: 1, lastUsed: 2 })
    expect(got?.bytes.buffer.byteLength).toBe(1000) // its own buffer, never Node's shared pool
    expect(await s.listModelCids()).toEqual([cid])
    await s.touchModelMeta(cid, 9)
    expect(await s.listModelMeta()).toEqual([{ cid, size: 1000, name: 'tiny', addedAt: 1, lastUsed: 9 }])
    expect((await s.getModelChunks(cid)).map((c) => [c.index, c.bytes[0]])).toEqual([
      [0, 0],
      [2, 2],
      [10, 10],
    ])
    await s.removeModel(cid)
    expect(await s.getModel(cid)).toBeUndefined()
    expect(await s.listModelMeta()).toEqual([])
    expect(await s.getModelChunks(cid)).toEqual([])
    expect((await files(s.dir)).filter((f) => f.startsWith('model'))).toEqual([])
  })

  it('listModelMeta repairs: a model file without listing is listed, a listing without file dropped', async () => {
    const s = await fresh()
    await s.putModelAndMeta({
      cid: 'bafkgone',
      bytes: Uint8Array.of(1),
      size: 1,
      name: 'g',
      addedAt: 1,
      lastUsed: 1,
    })
    await rm(join(s.dir, 'models', 'bafkgone.onnx'))
    await writeFile(join(s.dir, 'models', 'bafkcopied.onnx'), Uint8Array.of(1, 2, 3))
    const metas = await s.listModelMeta()
    expect(metas).toEqual([expect.objectContaining({ cid: 'bafkcopied', name: 'bafkcopied', size: 3 })])
    expect((await files(join(s.dir, 'model-meta'))).length).toBe(1)
    await s.clearModelChunks('bafkcopied')
    await s.deleteModel('bafkcopied')
    expect(await s.listModelCids()).toEqual([])
  })

  it('serves the model cache: put, verified read, LRU eviction', async () => {
    const s = await fresh()
    const cache = await createModelCache(s)
    await cache.setQuota(2500)
    const models = [1, 2, 3].map((n) => new Uint8Array(1000).fill(n))
    const cids = await Promise.all(models.map(async (m) => (await modelCid(m)).toString()))
    await cache.put(cids[0]!, models[0]!, 'a')
    await cache.put(cids[1]!, models[1]!, 'b')
    expect(await cache.read(cids[0]!)).toEqual(models[0])
    await sleep(5) // the touch is written behind the read
    expect(await cache.put(cids[2]!, models[2]!, 'c')).toEqual([cids[1]])
    expect((await cache.list()).map((m) => m.name).sort()).toEqual(['a', 'c'])
  })
})

describe('reputation and credits', () => {
  it('reputation merges puts by peer and clears', async () => {
    let s = await fresh()
    const r = (peer: string, valid: number) => ({
      peer,
      valid,
      invalid: 0,
      timedOut: 0,
      streak: 0,
      updatedAt: 1,
    })
    await s.putReputations([r('b', 1), r('a', 1)])
    await s.putReputations([r('b', 2)])
    s = await reopen(s)
    expect(await s.allReputation()).toEqual([r('a', 1), r('b', 2)])
    const rep = await createReputation(s)
    await rep.record('c', 'valid')
    await rep.flush()
    expect((await s.allReputation()).map((x) => x.peer)).toEqual(['a', 'b', 'c'])
    await s.clearReputation()
    expect(await s.allReputation()).toEqual([])
  })

  it('credits append in seq order; a taken seq rejects the whole append with ConstraintError', async () => {
    let s = await fresh()
    const c = (seq: number) => ({
      seq,
      receipt: Uint8Array.of(seq),
      prev: `p${seq}`,
      cid: `c${seq}`,
      credit: 1,
      at: seq,
    })
    expect(await s.lastCredit()).toBeUndefined()
    await s.addCredits([c(0), c(1)])
    await s.addCredits([c(2)])
    s = await reopen(s)
    expect(await errName(s.addCredits([c(3), c(1)]))).toBe('ConstraintError')
    expect(await errName(s.addCredits([c(4), c(4)]))).toBe('ConstraintError')
    expect(await s.listCredits()).toEqual([c(0), c(1), c(2)])
    expect(await s.lastCredit()).toEqual(c(2))
  })

  it('recent credits: the entries since a time, oldest first, without reading older files', async () => {
    const s = await fresh()
    const c = (seq: number) => ({
      seq,
      receipt: Uint8Array.of(seq),
      prev: '',
      cid: '',
      credit: 1,
      at: 100 * seq,
    })
    for (let seq = 0; seq < 40; seq += 4) await s.addCredits([c(seq), c(seq + 1), c(seq + 2), c(seq + 3)])
    expect((await s.recentCredits(3650)).map((r) => r.seq)).toEqual([37, 38, 39])
    expect((await s.recentCredits(3200)).map((r) => r.seq)).toEqual([32, 33, 34, 35, 36, 37, 38, 39])
    expect(await s.recentCredits(4000)).toEqual([])
    expect((await s.recentCredits(0)).length).toBe(40)
    // Files older than the cut are never opened: one that cannot be read there changes nothing.
    await rm(join(s.dir, 'credits', '0.cbor'))
    await mkdir(join(s.dir, 'credits', '0.cbor'))
    expect((await s.recentCredits(3650)).map((r) => r.seq)).toEqual([37, 38, 39])
  })

  it('two credit logs on one store append 60 receipts as one valid chain', async () => {
    const s = await fresh()
    const privateKey = await generateKeyPair('Ed25519')
    const locks: Locks = { request: (_, fn) => fn() } // no lock: the logs race, and re-link on ConstraintError
    const a = await createCredits({ store: s, storeName: s.dir, privateKey, locks })
    const b = await createCredits({ store: s, storeName: s.dir, privateKey, locks })
    const receipts = await Promise.all(Array.from({ length: 60 }, (_, i) => receiptFor(i, privateKey)))
    const recs = await Promise.all(receipts.map((r, i) => (i % 3 ? a : b).append(r)))
    expect(recs.map((x) => x.seq).sort((x, y) => x - y)).toEqual(Array.from({ length: 60 }, (_, i) => i))
    expect((await verifyCreditLog(await a.export())).count).toBe(60)
    a.stop()
    b.stop()
  })
})

describe('lock, crash leftovers, stop', () => {
  it('a second open of the folder throws StoreLockedError; stop releases it', async () => {
    const s = await fresh()
    expect(await errName(createFileStore(s.dir))).toBe('StoreLockedError')
    s.stop()
    const again = await openAt(s.dir)
    expect(await again.listJobs()).toEqual([])
  })

  it('takes over a lock left by a dead process, but not one of a live process', async () => {
    const dir = await tmp()
    const dead = spawnSync(process.execPath, ['-e', '']).pid!
    await writeFile(join(dir, 'LOCK'), `${dead}\n`)
    const s = await openAt(dir)
    expect((await readFile(join(dir, 'LOCK'), 'utf8')).trim()).toBe(String(process.pid))
    s.stop()
    await writeFile(join(dir, 'LOCK'), `${process.ppid}\n`) // alive
    expect(await errName(createFileStore(dir))).toBe('StoreLockedError')
    await writeFile(join(dir, 'LOCK'), '') // its owner is still writing its pid
    expect(await errName(createFileStore(dir))).toBe('StoreLockedError')
  })

  it('ignores and removes stray temp files a killed process left', async () => {
    let s = await fresh()
    await s.putJob(rec('j', 'verified'))
    await s.shutdown()
    await writeFile(join(s.dir, 'jobs', `${TEMP_PREFIX}deadbeef`), Uint8Array.of(0xff, 1)) // a torn write
    await writeFile(join(s.dir, 'settings', `${TEMP_PREFIX}0`), '')
    await mkdir(join(s.dir, 'model-chunks', 'bafk'))
    await writeFile(join(s.dir, 'model-chunks', 'bafk', `${TEMP_PREFIX}1`), '')
    // Not the store's: a folder of the user's own beside the store's folders is left alone.
    await mkdir(join(s.dir, 'mine'))
    await writeFile(join(s.dir, 'mine', `${TEMP_PREFIX}keep`), 'a user file')
    s = await openAt(s.dir)
    expect((await s.listJobs()).map((j) => j.id)).toEqual(['j'])
    expect((await readdir(join(s.dir, 'jobs'))).some((n) => n.startsWith(TEMP_PREFIX))).toBe(false)
    expect((await files(s.dir)).filter((f) => f.includes(TEMP_PREFIX))).toEqual([`mine/${TEMP_PREFIX}keep`])
  })

  it('takes over a lock holding its own pid from an earlier life, but refuses a second open in one process', async () => {
    const dir = await tmp()
    await writeFile(join(dir, 'LOCK'), `${process.pid}\n`) // a container's PID 1, restarted
    const s = await createFileStore(dir)
    expect(await errName(createFileStore(dir))).toBe('StoreLockedError')
    await s.shutdown()
    const again = await createFileStore(dir)
    await again.shutdown()
  })

  it('a credit or reputation file that decodes to the wrong shape is skipped, not fatal', async () => {
    let s = await fresh()
    await s.shutdown()
    await writeFile(join(s.dir, 'credits', 'junk.cbor'), dagCbor.encode([null, { seq: 'x' }, 7]))
    await writeFile(join(s.dir, 'reputation.cbor'), dagCbor.encode({ not: 'a list' }))
    s = await openAt(s.dir)
    expect(await s.listCredits()).toEqual([])
    expect(await s.allReputation()).toEqual([])
  })

  it('opens cleanly after a writer process is killed mid-write', async () => {
    const dir = await tmp()
    const script = join(dir, 'writer.mts')
    await writeFile(
      script,
      `import { createFileStore } from ${JSON.stringify(join(process.cwd(), 'node/store/index.ts'))}
      const s = await createFileStore(${JSON.stringify(join(dir, 'store'))})
      const big = new Uint8Array(1 << 20)
      for (let i = 0; ; i++) {
        await s.putJob({ id: 'j' + i, model: 'm', modelName: 'm', status: 'verified', submittedAt: i, verified: true, record: big })
        if (i === 2) console.log('ready')
      }`,
    )
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    await new Promise<void>((ok) => child.stdout.on('data', () => ok()))
    await sleep(300)
    child.kill('SIGKILL')
    await new Promise((ok) => child.on('exit', ok))
    const s = await openAt(join(dir, 'store'))
    const jobs = await s.listJobs(1e6)
    expect(jobs.length).toBeGreaterThan(3)
    expect(jobs.every((j) => j.record?.byteLength === 1 << 20)).toBe(true)
    expect((await files(s.dir)).filter((f) => f.includes('.tmp-'))).toEqual([])
  })

  it('rejects calls after stop with InvalidStateError', async () => {
    const s = await fresh()
    s.stop()
    expect(await errName(s.getSetting('k'))).toBe('InvalidStateError')
    expect(await errName(s.putJob(rec('x', 'running')))).toBe('InvalidStateError')
  })
})

describe('the requester journal over the file store', () => {
  const spec: JobSpec = { v: 1, model: 'm', modelName: 'm', policy: policyFor('tensor'), createdAt: 1 }
  const x = { x: { dtype: 'float32' as const, dims: [2], data: Float32Array.of(1, 2) } }
  const q = (): QuorumState => ({ replicas: [], target: 2, quorum: 2, adaptiveSingle: false })
  const journal = (store: FileStore, jobHistory = 10) =>
    createStoreJournal({ store, log: logger('t'), onChange() {}, jobHistory })

  it('resumes a job begun before a restart, with its inputs; its end drops the pending state', async () => {
    let s = await fresh()
    await journal(s).begin('a', spec, q(), x, 0)
    const state = q()
    state.replicas.push({ peer: 'p1', status: 'dispatched', startedAt: 5 })
    const p = journal(s).progress('a', spec, state)
    p.mark()
    await sleep(1200) // written a second behind the loop
    await p.close()
    s = await reopen(s)
    const j = journal(s)
    const [pending] = await j.pending()
    expect(pending?.id).toBe('a')
    expect(pending?.spec).toEqual(spec)
    expect(pending?.q.replicas).toEqual([{ peer: 'p1', status: 'dispatched', startedAt: 5 }])
    const inputs = await pending!.inputs()
    expect(inputs?.x?.data).toEqual(Float32Array.of(1, 2))
    expect((await j.get('a'))?.status).toBe('running')
    await j.end({ ...journalRecord('a', spec, q()), status: 'failed', reason: 'r' }, 0)
    await s.flushJobStates()
    expect(await j.pending()).toEqual([])
    expect((await j.get('a'))?.status).toBe('failed')
  })

  it('prunes old records after the first end', async () => {
    const s = await fresh()
    for (let i = 0; i < 5; i++) await s.putJob(rec(`old${i}`, 'verified', i))
    await journal(s, 2).end(rec('new', 'verified', 10), 0)
    expect((await s.listJobs()).map((j) => j.id)).toEqual(['new', 'old4'])
  })
})

/** A validly signed receipt for a made-up job `i` (what a contributor appends per served job). */
async function receiptFor(i: number, key: PrivateKey): Promise<Receipt> {
  const cid = async (s: string) => CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode(s)))
  const worker = peerIdFromPrivateKey(key).toString()
  return signReceipt(
    {
      v: 1,
      job: await cid(`job ${i}`),
      model: await cid('model'),
      input: await cid(`input ${i}`),
      output: await cid(`output ${i}`),
      worker,
      requester: worker,
      ep: 'wasm',
      adapter: 'none',
      timing: { queueUs: 0, runUs: 1000 },
      ts: Date.now(),
    },
    key,
  )
}
