/** The IndexedDB schema: every store and record type, and one upgrade step per version. */
import type { DBSchema, IDBPDatabase } from 'idb'
import { own } from '../shared/bytes.ts'

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
  replicas?: { peer: string; status: string; ms?: number; error?: string }[]
  /** Agreeing workers and the quorum they met. */
  workers?: string[]
  quorum?: number
  /** dag-cbor quorum record (verified jobs): exportable, checkable offline. */
  record?: Uint8Array
}

/** `rec` with its byte fields in buffers of their own size, for storing (see `own`). */
export function ownJobBytes(rec: JobRecord): JobRecord {
  return {
    ...rec,
    ...(rec.receipt ? { receipt: own(rec.receipt) } : {}),
    ...(rec.record ? { record: own(rec.record) } : {}),
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
  /** Consecutive valid results; reset by one invalid result. */
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
  jobs: { key: string; value: JobRecord; indexes: { submittedAt: number } }
  settings: { key: string; value: unknown }
  modelChunks: { key: [string, number]; value: ModelChunkRecord; indexes: { cid: string } }
  reputation: { key: string; value: ReputationRecord }
  pending: { key: string; value: PendingRecord; indexes: { createdAt: number } }
  credits: { key: number; value: CreditRecord }
  jobInputs: { key: string; value: JobInputsRecord }
}

export type Db = IDBPDatabase<Schema>

export const DB_VERSION = 3

/** One step per version; never edit a past step. */
export function upgrade(db: Db, oldVersion: number): void {
  if (oldVersion < 1) {
    db.createObjectStore('identity')
    db.createObjectStore('models', { keyPath: 'cid' }).createIndex('lastUsed', 'lastUsed')
    db.createObjectStore('jobs', { keyPath: 'id' }).createIndex('submittedAt', 'submittedAt')
    db.createObjectStore('settings')
  }
  if (oldVersion < 2) {
    db.createObjectStore('modelChunks', { keyPath: ['cid', 'index'] }).createIndex('cid', 'cid')
    db.createObjectStore('reputation', { keyPath: 'peer' })
    db.createObjectStore('pending', { keyPath: 'id' }).createIndex('createdAt', 'createdAt')
    db.createObjectStore('credits', { keyPath: 'seq' })
  }
  if (oldVersion < 3) db.createObjectStore('jobInputs', { keyPath: 'id' })
}
