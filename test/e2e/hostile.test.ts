/**
 * A hostile stranger on the swarm (test/helpers/hostile-peer.ts): a Node libp2p peer on the same
 * relay, with valid signed adverts and direct WebRTC links to real tabs. A requests; B and C are
 * honest contributors; H misbehaves as each test sets it.
 */
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import catalog from '../../public/models/catalog.json' with { type: 'json' }
import { JOB_STREAMS_MARGIN, MAX_PARTIAL_BYTES_PER_PEER } from '../../src/jobs/handler.ts'
import {
  MAX_REASON_LENGTH,
  MAX_REQUEST_BYTES,
  REJECT_CODES,
  type RejectCode,
} from '../../src/jobs/messages.ts'
import { BUSY_HOLD_MS } from '../../src/jobs/scheduler.ts'
import { MODEL_STREAMS_PER_PEER } from '../../src/models/provider.ts'
import { MAX_REQUEST_BYTES as MAX_MODEL_REQUEST_BYTES } from '../../src/models/transfer.ts'
import { JOB_PROTOCOL, MODEL_PROTOCOL } from '../../src/shared/protocol.ts'
import {
  flood,
  holdPartialFrames,
  invalidAdverts,
  jobFrames,
  modelFrames,
} from '../helpers/hostile-frames.ts'
import { type HostilePeer, startHostilePeer } from '../helpers/hostile-peer.ts'
import { peerId, type Swarm, startSwarm, waitForContributors } from '../helpers/swarm.ts'
import { heapAfterGc, peerStreams, sampleLag, settledHeap, streamsGone } from '../helpers/tab-probe.ts'

/**
 * What the partial-frame test holds at B: 32 streams (past maxSlots + JOB_STREAMS_MARGIN), each
 * 3 MiB into a declared 6 MiB frame: 96 MiB in all, past MAX_PARTIAL_BYTES_PER_PEER (24 MiB).
 */
const PARTIAL = { streams: 32, declared: 6 * 1024 * 1024, sent: 3 * 1024 * 1024 }
/** A stored refusal: the reason (cut to MAX_REASON_LENGTH) plus "<peer> rejected the job (<code>): ". */
const STORED_TEXT_MAX = MAX_REASON_LENGTH + 160
/** A job stream's first frame must arrive within this (the handler's requestTimeoutMs). */
const JOB_STREAM_LIMIT_MS = 30_000
/** The flood: a warm-up (V8 compiles these paths: ~0.8 MB of code), then the rest; 10,000 frames in all. */
const WARM = { job: 500, model: 200, advert: 1000 }
const FLOOD = { job: 1500, model: 800, advert: 6000 }
const FLOODED = [WARM, FLOOD].reduce((n, f) => n + f.job + f.model + f.advert, 0)

/** 'bounded', or the length of a stored text past STORED_TEXT_MAX. */
const bounded = (n: number) => (n <= STORED_TEXT_MAX ? 'bounded' : n)

const tiny = catalog.find((e) => e.name === 'mlp-tiny')!
const MiB = 1024 * 1024

interface Batch {
  verified: number
  failed: { id: string; error: string }[]
}

/** Submits `n` jobs from A (`peer`: on that contributor only); counts how they ended. */
const batch = (
  a: Page,
  prefix: string,
  n: number,
  policy: Record<string, unknown>,
  peer?: string,
): Promise<Batch> =>
  a.evaluate(
    async ({ prefix, n, policy, peer }) => {
      const ends = await Promise.allSettled(
        Array.from({ length: n }, (_, i) =>
          window.__peer.submit(
            'mlp-tiny',
            { x: { dtype: 'float32', dims: [1, 16], data: new Float32Array(16).fill(i / n) } },
            { id: `${prefix}-${i}`, policy, ...(peer ? { peer } : {}) },
          ),
        ),
      )
      return {
        verified: ends.filter((e) => e.status === 'fulfilled').length,
        failed: ends.flatMap((e, i) =>
          e.status === 'rejected'
            ? [{ id: `${prefix}-${i}`, error: String((e.reason as Error).message).slice(0, 200) }]
            : [],
        ),
      }
    },
    { prefix, n, policy, peer },
  )

/** A's records of a batch: replicas per peer, and the longest text stored in any record. */
const records = (a: Page, prefix: string) =>
  a.evaluate(async (prefix) => {
    const recs = (await window.__peer.jobs(2000)).filter((j) => j.id.startsWith(`${prefix}-`))
    const perPeer: Record<string, number> = {}
    let longest = 0
    const walk = (x: unknown): void => {
      if (typeof x === 'string') longest = Math.max(longest, x.length)
      else if (Array.isArray(x)) x.forEach(walk)
      else if (x && typeof x === 'object' && !ArrayBuffer.isView(x)) Object.values(x).forEach(walk)
    }
    for (const r of recs) {
      walk(r)
      for (const rep of r.replicas ?? []) perPeer[rep.peer] = (perPeer[rep.peer] ?? 0) + 1
    }
    return { n: recs.length, perPeer, longest }
  }, prefix)

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
/**
 * After 'busy' replies A holds off the stranger for BUSY_HOLD_MS (or until its next advert): the
 * next test waits that out, or its batch would go to the tabs alone and test nothing.
 */
const heldOff = (code: string) => (code === 'busy' ? sleep(BUSY_HOLD_MS) : undefined)

describe('a hostile stranger', () => {
  let swarm: Swarm
  let a: Page
  let b: Page
  let ids: string[]
  let h: HostilePeer
  const pageErrors: string[] = []
  const resetReputation = () => a.evaluate(() => window.__peer.reputation.reset())
  const trusted = (id: string) => a.evaluate((id) => window.__peer.reputation.trusted(id), id)
  const strict = { redundancy: 2, quorum: 2, adaptive: false, deadlineMs: 15_000 }

  beforeAll(async () => {
    swarm = await startSwarm({ tabs: 3 })
    ;[a, b] = swarm.tabs as [Page, Page]
    for (const t of swarm.tabs) t.on('pageerror', (e) => pageErrors.push(e.message))
    ids = await Promise.all(swarm.tabs.map(peerId))
    for (const t of swarm.tabs.slice(1)) await t.evaluate(() => window.__peer.setContributing(true))
    h = await startHostilePeer({ relay: swarm.relay.multiaddrs[0]!, models: [tiny.cid] })
    await waitForContributors(a, [...ids.slice(1), h.id])
  })
  afterAll(async () => {
    await h?.stop()
    await swarm?.stop()
  })

  it('harness: the stranger links to each tab over direct WebRTC and is sent jobs', async () => {
    for (const id of ids) await h.link(id)
    h.mode = { kind: 'honest' }
    const before = h.seen.length
    const r = await batch(a, 'harness', 6, { redundancy: 3, quorum: 2, adaptive: false })
    expect(r.failed).toEqual([])
    expect(h.seen.length - before).toBeGreaterThan(0)
  })

  describe('refusals are one replica each', () => {
    for (const code of REJECT_CODES) {
      it(`a stranger refusing every job with '${code}' fails none of them`, async () => {
        await resetReputation()
        h.mode = { kind: 'reject', code }
        const before = h.seen.length
        const r = await batch(a, `refuse-${code}`, 6, strict)
        await heldOff(code)
        expect({ reachedStranger: h.seen.length > before, failed: r.failed }).toEqual({
          reachedStranger: true,
          failed: [],
        })
      })
    }

    it('refusing what others computed costs the stranger its trust; busy does not', async () => {
      const refuse = async (code: RejectCode) => {
        await resetReputation()
        h.mode = { kind: 'reject', code }
        await batch(a, `trust-${code}`, 8, strict)
        await heldOff(code)
        return trusted(h.id)
      }
      expect({ busy: await refuse('busy'), unknownModel: await refuse('unknown-model') }).toEqual({
        busy: true,
        unknownModel: false,
      })
      expect(await trusted(ids[1]!)).toBe(true)
    })
  })

  describe('refusal frames are bounded', () => {
    it('10 MB refusals: jobs verify and no stored text passes the reason limit', async () => {
      await resetReputation()
      h.mode = { kind: 'huge-reject', code: 'internal', bytes: 10 * MiB }
      const r = await batch(a, 'huge', 4, strict)
      const rec = await records(a, 'huge')
      expect(rec.perPeer[h.id]).toBeGreaterThan(0)
      expect({ failed: r.failed, longestText: bounded(rec.longest) }).toEqual({
        failed: [],
        longestText: 'bounded',
      })
    })

    it('malformed refusals: jobs verify and no stored text passes the reason limit', async () => {
      await resetReputation()
      h.mode = { kind: 'malformed-reject' }
      const r = await batch(a, 'badreject', 6, strict)
      const rec = await records(a, 'badreject')
      expect(rec.perPeer[h.id]).toBeGreaterThan(0)
      expect({ failed: r.failed, longestText: bounded(rec.longest) }).toEqual({
        failed: [],
        longestText: 'bounded',
      })
    })
  })

  it('a stranger advertising 64 free slots and benchUs 1 holds no more of our jobs than it has delivered', async () => {
    // B and C have answered A correctly all along; the new stranger has no history.
    await h.advertise({ contributing: false, slots: 0 })
    const h2 = await startHostilePeer({
      relay: swarm.relay.multiaddrs[0]!,
      models: [tiny.cid],
      claims: { slots: 64, maxSlots: 64, benchUs: 1 },
      mode: { kind: 'honest', delayMs: 200 },
    })
    try {
      await waitForContributors(a, [h2.id])
      const r = await batch(a, 'inflated', 30, { redundancy: 2, quorum: 2, adaptive: false })
      expect(r.failed).toEqual([])
      // Its share depends on how fast the tabs run on a loaded machine, and earning work by
      // delivering it is fair; what its claims must not buy is jobs held beyond its record.
      const fromA = h2.seen.filter((j) => j.requester === ids[0])
      const beyond = fromA.filter((j) => j.held > 1 + j.answered)
      const { perPeer } = await records(a, 'inflated')
      expect({ recorded: (perPeer[h2.id] ?? 0) > 0, beyond }).toEqual({ recorded: true, beyond: [] })
    } finally {
      await h2.stop()
      await h.advertise({ contributing: true, slots: 2, maxSlots: 2 })
    }
  })

  describe('every byte from a peer is bounded', () => {
    it(`${FLOODED} malformed job, model and advert frames: no crash, no hang, jobs served, heap back`, async () => {
      const bId = ids[1]!
      h.mode = { kind: 'honest' }
      const conn = await h.link(bId)
      // Adverts go to B directly: the relay would drop invalid ones before they reach a tab.
      await expect.poll(() => h.gossipPeers(), { timeout: 10_000 }).toContain(bId)
      const [jobs, models, adverts] = await Promise.all([
        jobFrames(h.privateKey, tiny.cid, MAX_REQUEST_BYTES),
        modelFrames(tiny.cid, MAX_MODEL_REQUEST_BYTES),
        invalidAdverts(h.privateKey, WARM.advert + FLOOD.advert),
      ])
      // As many streams at once as B admits from one peer, so frames reach a parser.
      const maxSlots = await b.evaluate(() => window.__peer.capabilities().maxSlots)
      const hangMs = JOB_STREAM_LIMIT_MS + 5000
      const streams = (n: { job: number; model: number }) =>
        Promise.all([
          flood(conn, JOB_PROTOCOL, jobs, n.job, { concurrency: maxSlots + JOB_STREAMS_MARGIN, hangMs }),
          flood(conn, MODEL_PROTOCOL, models, n.model, { concurrency: MODEL_STREAMS_PER_PEER, hangMs }),
        ])
      const errorsBefore = pageErrors.length
      const started = performance.now()
      const warm = await streams(WARM)
      const lingerMs = [await streamsGone(b, h.id)]
      const heap0 = await settledHeap(b)
      const lag = sampleLag(b)
      const [[j, m], served] = await Promise.all([
        streams(FLOOD),
        sleep(500).then(() => batch(a, 'flooded', 6, {}, bId)),
      ])
      const worstLag = await lag()
      const t = performance.now()
      await b.evaluate(() => 1)
      const answerMs = Math.round(performance.now() - t)
      lingerMs.push(await streamsGone(b, h.id))
      const heapStreams = await settledHeap(b, heap0 * 1.1)
      // Adverts last: B cuts off a linked peer that sends it more than MAX_INVALID_ADVERTS of them.
      const rpcs = h.sendAdverts(bId, adverts)
      await b.evaluate(() => new Promise((r) => setTimeout(r, 500)))
      const after = await batch(a, 'postflood', 4, {}, bId)
      const floodMs = Math.round(performance.now() - started)
      const heap1 = await settledHeap(b, heap0 * 1.1)
      // The invalid adverts changed nothing B believes of H (it may have dropped H altogether).
      const view = await b.evaluate(
        (id) => window.__peer.peers().find((p) => p.id === id)?.advert.maxSlots,
        h.id,
      )
      const cutOff = await b.evaluate(
        (id) => window.__peer.peers().find((p) => p.id === id)?.direct !== true,
        h.id,
      )
      const all = [...warm, j, m]
      const report = {
        floodMs,
        worstLag,
        answerMs,
        lingerMs,
        job: j,
        model: m,
        rpcs,
        heap0,
        heapStreams,
        heap1,
      }
      console.log('flood:', JSON.stringify(report))
      expect(pageErrors.slice(errorsBefore)).toEqual([])
      expect(all.map((f) => f.hung)).toEqual([0, 0, 0, 0])
      expect(Math.max(...all.map((f) => f.maxMs))).toBeLessThan(JOB_STREAM_LIMIT_MS)
      const answered = all.reduce((n, f) => n + f.answered, 0)
      expect(answered, 'streams B answered').toBeGreaterThan(0.95 * all.reduce((n, f) => n + f.streams, 0))
      expect({ during: served.failed, after: after.failed }).toEqual({ during: [], after: [] })
      expect([2, undefined], "B's view of H's advert").toContain(view)
      expect(cutOff, 'B cut off the peer that sent it invalid adverts').toBe(true)
      expect(answerMs, 'B answers at once after the flood').toBeLessThan(1000)
      expect(worstLag, 'B never stalled past a stream limit').toBeLessThan(JOB_STREAM_LIMIT_MS)
      const split = `heap ${heap0} → ${heapStreams} after the streams → ${heap1} after ${FLOOD.advert} adverts`
      expect(heapStreams, split).toBeLessThanOrEqual(heap0 * 1.1)
      // Gossipsub keeps ~300 B per distinct message (seen cache, delivery record) for 2 minutes. Measured
      // from heapStreams too: what earlier tests left may be let go only now, and lift heap0.
      expect(heap1 - heapStreams, split).toBeLessThanOrEqual(0.1 * Math.min(heap0, heapStreams))
      expect(heap1, split).toBeLessThanOrEqual(heap0 * 1.1)
    }, 180_000) // ~25 s on an idle 2-core machine; far more when it is shared

    it('many concurrent partial frames: the contributor holds no more than the bound', async () => {
      // A stranger of its own: B may rightly have dropped H for the adverts above.
      const hp = await startHostilePeer({ relay: swarm.relay.multiaddrs[0]!, models: [tiny.cid] })
      const conn = await hp.link(ids[1]!)
      const maxSlots = await b.evaluate(() => window.__peer.capabilities().maxSlots)
      const heap0 = await settledHeap(b)
      const part = await holdPartialFrames(conn, JOB_PROTOCOL, PARTIAL)
      try {
        // Sent is not yet received: the bound applies as bytes reach B, so let them arrive.
        const openBytes = () => part.held.reduce((n, s) => n + (s.endedMs === undefined ? s.sent : 0), 0)
        for (let t = 0; t < 20 && openBytes() > MAX_PARTIAL_BYTES_PER_PEER; t++) await sleep(500)
        await sleep(1000)
        const heap1 = await heapAfterGc(b)
        const streams = part.held
        const held = streams.filter((s) => s.endedMs === undefined)
        const report = {
          open: held.length,
          refused: streams.length - held.length,
          heldBytes: held.reduce((n, s) => n + s.sent, 0),
          growth: heap1 - heap0,
          slowestRefusalMs: Math.round(Math.max(0, ...streams.map((s) => s.endedMs ?? 0))),
          codes: Object.fromEntries(
            [...new Set(streams.map((s) => s.code ?? 'none'))].map((c) => [
              c,
              streams.filter((s) => (s.code ?? 'none') === c).length,
            ]),
          ),
        }
        // A refused stream must end at the tab too, not wait half-open with what it buffered.
        await expect
          .poll(async () => (await peerStreams(b, hp.id)).length, { timeout: 5000 })
          .toBeLessThanOrEqual(held.length)
        const atB = await peerStreams(b, hp.id)
        console.log('partial frames:', JSON.stringify({ ...report, streamsAtB: atB.length }))
        const served = await batch(a, 'partial', 2, {}, ids[1]!)
        const what = JSON.stringify(report)
        expect(served.failed).toEqual([])
        expect(report.open, what).toBeLessThanOrEqual(maxSlots + JOB_STREAMS_MARGIN)
        expect(report.heldBytes, what).toBeLessThanOrEqual(MAX_PARTIAL_BYTES_PER_PEER)
        expect(atB.length, `streams B still holds: ${atB.slice(0, 2).join('; ')}`).toBeLessThanOrEqual(
          report.open,
        )
        expect(report.growth, what).toBeLessThanOrEqual(MAX_PARTIAL_BYTES_PER_PEER + 8 * MiB)
        // Past the stream bound, refused as they open, with `busy` (the requester retries elsewhere);
        // past the byte bound as the bytes arrive, which on a busy machine takes seconds for these
        // 30 MiB. Both well before a frame's time limit.
        const overCount = streams.length - (maxSlots + JOB_STREAMS_MARGIN)
        const atOpen = streams.filter((s) => s.code === 'busy' && /too many job streams/.test(s.reason ?? ''))
        // Fewer than overCount when a stream refused for bytes freed its slot before the last ones opened.
        const said = `streams past the stream bound are refused as they open: ${what}`
        expect(atOpen.length, said).toBeGreaterThan(0)
        expect(atOpen.length, said).toBeLessThanOrEqual(overCount)
        expect(report.slowestRefusalMs, what).toBeLessThan(JOB_STREAM_LIMIT_MS)
      } finally {
        part.release()
        await hp.stop()
      }
    })
  })
})
