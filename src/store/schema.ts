/** The IndexedDB schema: every store and record type, and one upgrade step per version. */
import type { DBSchema, IDBPDatabase, IDBPObjectStore, IDBPTransaction, StoreNames } from 'idb'
import { own } from '../shared/bytes.ts'
import type { VerificationPolicy } from '../trust/policy.ts'

export interface ModelRecord {
  cid: string
  bytes: Uint8Array
  size: number
  name: string
  addedAt: number
  lastUsed: number
}

/** A job's named end states are verified, failed and inconclusive; running until then. */
export type JobStatus = 'running' | 'verified' | 'failed' | 'inconclusive'

export interface JobRecord {
  id: string
  model: string
  modelName: string
  status: JobStatus
  submittedAt: number
  finishedAt?: number
  worker?: string
  ep?: string
  roundTripMs?: number
  runMs?: number
  verified: boolean
  error?: { name: string; message: string }
  /** dag-cbor receipt bytes, exportable and verifiable offline. */
  receipt?: Uint8Array
  outputCid?: string
  /** CID of the signed job body of the first agreeing replica. */
  jobCid?: string
  /** Why a job failed or was inconclusive. */
  reason?: string
  /** Every replica dispatched: peer, status, and round trip. */
  /** `convicted`: an answer a dispute proved wrong. */
  replicas?: { peer: string; status: string; ms?: number; error?: string; convicted?: boolean }[]
  /** Dispatches refused for capacity and retried: not replicas. */
  busy?: number
  /** The verification policy the job ran under (absent in records from before it was kept). */
  policy?: VerificationPolicy
  /** Verified: the stated risk (JobOutcome.risk). */
  risk?: number
  /** Agreeing workers and the quorum they met. */
  workers?: string[]
  quorum?: number
  /** dag-cbor quorum record (verified jobs): exportable, checkable offline. */
  record?: Uint8Array
  /** Bytes of `receipt`, `record` (the outputs) and the texts, set when stored: the history's byte budget. */
  bytes?: number
}

/** What a record costs the history budget: receipts, the quorum record and every stored text (UTF-16). */
export const jobBytes = (rec: JobRecord) =>
  (rec.receipt?.byteLength ?? 0) +
  (rec.record?.byteLength ?? 0) +
  2 * ((rec.reason?.length ?? 0) + (rec.error?.message.length ?? 0)) +
  2 * (rec.replicas ?? []).reduce((n, r) => n + r.peer.length + (r.error?.length ?? 0), 0)

/** `rec` with its byte fields in buffers of their own size (see `own`) and their size, for storing. */
export function ownJobBytes(rec: JobRecord): JobRecord {
  return {
    ...rec,
    ...(rec.receipt ? { receipt: own(rec.receipt) } : {}),
    ...(rec.record ? { record: own(rec.record) } : {}),
    bytes: jobBytes(rec),
  }
}

/** A chunk of a model being fetched from peers, kept so an interrupted transfer can resume. */
export interface ModelChunkRecord {
  cid: string
  index: number
  bytes: Uint8Array
}

/** Per-peer validation history, as a requester saw it. */
export interface ReputationRecord {
  peer: string
  valid: number
  invalid: number
  timedOut: number
  /** Refusals of jobs others computed; absent in records written before it existed. */
  refused?: number
  /**
   * Valid results another peer's agreed with (a quorum of 2 or more): the checks behind the stated
   * risk. A single unreplicated result is valid but no check. Absent in records from before it.
   */
  checked?: number
  /** Consecutive valid results; reset by one invalid result or refusal. */
  streak: number
  updatedAt: number
}

/** A requester's unfinished job, persisted so a reload resumes it (shape owned by src/jobs). */
export interface PendingRecord {
  id: string
  createdAt: number
  /** Opaque, versioned state owned by the requester module. */
  state: unknown
}

/** A pending job's inputs, written once at submit and kept apart from its (rewritten) progress. */
export interface JobInputsRecord {
  id: string
  /** Opaque, owned by the requester module. */
  inputs: unknown
}

/** One entry of a contributor's hash-linked, append-only credit log. */
export interface CreditRecord {
  seq: number
  /** dag-cbor of the signed receipt of a job this peer served. */
  receipt: Uint8Array
  /** Hash link: CID string of the previous entry ('' for the first). */
  prev: string
  /** CID string of this entry ({ seq, prev, receipt }). */
  cid: string
  credit: number
  at: number
}

export interface Schema extends DBSchema {
  identity: { key: string; value: { privateKey: Uint8Array; createdAt: number } }
  models: { key: string; value: ModelRecord; indexes: { lastUsed: number } }
  jobs: { key: string; value: JobRecord; indexes: { history: [number, string, number] } }
  settings: { key: string; value: unknown }
  modelChunks: { key: [string, number]; value: ModelChunkRecord; indexes: { cid: string } }
  reputation: { key: string; value: ReputationRecord }
  pending: { key: string; value: PendingRecord; indexes: { createdAt: number } }
  credits: { key: number; value: CreditRecord }
  jobInputs: { key: string; value: JobInputsRecord }
}

export type Db = IDBPDatabase<Schema>

export const DB_VERSION = 4

/** One step per version; never edit a past step. */
export function upgrade(
  db: Db,
  oldVersion: number,
  tx: IDBPTransaction<Schema, StoreNames<Schema>[], 'versionchange'>,
): void {
  if (oldVersion < 1) {
    db.createObjectStore('identity')
    db.createObjectStore('models', { keyPath: 'cid' }).createIndex('lastUsed', 'lastUsed')
    db.createObjectStore('jobs', { keyPath: 'id' }).createIndex('submittedAt' as never, 'submittedAt') // until v4
    db.createObjectStore('settings')
  }
  if (oldVersion < 2) {
    db.createObjectStore('modelChunks', { keyPath: ['cid', 'index'] }).createIndex('cid', 'cid')
    db.createObjectStore('reputation', { keyPath: 'peer' })
    db.createObjectStore('pending', { keyPath: 'id' }).createIndex('createdAt', 'createdAt')
    db.createObjectStore('credits', { keyPath: 'seq' })
  }
  if (oldVersion < 3) db.createObjectStore('jobInputs', { keyPath: 'id' })
  if (oldVersion < 4) {
    // Submit time, then id, and size by key alone: listJobs walks it, and pruning reads no outputs.
    // It replaces the submittedAt index (the same order), so a write updates one index. Records
    // written before v4 get their size here, in the upgrade's own transaction: openDB resolves only
    // after it, and a failure aborts it (openDB rejects).
    const jobs = tx.objectStore('jobs')
    jobs.createIndex('history', ['submittedAt', 'id', 'bytes'])
    jobs.deleteIndex('submittedAt' as never) // gone from the schema type since v4
    if (oldVersion >= 1)
      sizeJobs(jobs).catch(() => {
        try {
          tx.abort()
        } catch {} // already ended
      })
  }
}

async function sizeJobs(jobs: IDBPObjectStore<Schema, StoreNames<Schema>[], 'jobs', 'versionchange'>) {
  for (let c = await jobs.openCursor(); c; c = await c.continue())
    if (c.value.bytes === undefined) await c.update({ ...c.value, bytes: jobBytes(c.value) })
}
