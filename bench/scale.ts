/**
 * Section `scale`: N Node contributor peers (bench/scale-peers.ts, PEERS_PER_PROCESS to a process) on
 * two peered relays on loopback, then a fresh Node requester in this process: how long it takes to
 * learn every contributor, mlp-tiny dispatch latency at a steady rate, relay CPU and RSS per
 * connected peer, advert traffic per peer, and direct links per peer, for each N. A size the
 * machine cannot host, or that does not fit the section's time, ends as a row saying why.
 */
import './url-imports.ts'
import { mkdtemp, rm } from 'node:fs/promises'
import { freemem, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import catalog from '../public/models/catalog.json' with { type: 'json' }
import type { RelayProcess } from '../scripts/relay-process.ts'
import type { ScaleRow } from './scale-report.ts'
import {
  advertRate,
  type Child,
  connectionsTo,
  machineBusyMs,
  mean,
  procUsage,
  round1,
  type Snap,
  sleep,
  snapshot,
  spawnPeers,
  startRelays,
  stopChild,
  ready as whenReady,
  windowCpu,
} from './scale-swarm.ts'
import { dist, quantile } from './stats.ts'

/**
 * Peers per child process. Fewer peers to a process cost memory (about 75 MiB a peer at 5, 47 at 25)
 * but keep a collection in one heap from stalling many contributors at once: at 25 peers, one
 * process of 25 gave dispatch p95 505–1657 ms with every job of a ~2 s window late together, five of
 * 5 gave 107–212 ms. Real contributors each have their own machine.
 */
export const PEERS_PER_PROCESS = 5
const CONVERGE_MS = 90_000
/** After a join every peer re-advertises; measuring starts once the advert rate is back near steady. */
const SETTLE_MS = 90_000
const JOIN_MS = 30_000
const RATE = 50 // jobs/s
/** Time a size needs after its peers are up (settle, windows, join, dispatch, stop), roughly. */
const AFTER_READY_MS = 150_000

export interface ScaleOptions {
  sizes: number[]
  idleMs: number
  jobsMs: number
  /** Wall time for the whole section; a size that cannot finish in what is left is cut short. */
  budgetMs: number
  log(s: string): void
}

export async function scaleBench(o: ScaleOptions): Promise<ScaleRow[]> {
  ;(globalThis as { __PC_TEST_HOOKS__?: boolean }).__PC_TEST_HOOKS__ = false
  const deadline = performance.now() + o.budgetMs
  const rows: ScaleRow[] = []
  for (const n of o.sizes) {
    const left = deadline - performance.now()
    if (left < AFTER_READY_MS + 30_000) {
      rows.push({
        n,
        procs: Math.ceil(n / PEERS_PER_PROCESS),
        loadAtStart: loadavg().map(round1),
        errors: [],
        limit: 'not attempted: out of the section’s time',
      })
      continue
    }
    rows.push(await scaleOne(n, o, left - AFTER_READY_MS))
  }
  return rows
}

async function scaleOne(n: number, o: ScaleOptions, readyMs: number): Promise<ScaleRow> {
  const procs = Math.ceil(n / PEERS_PER_PROCESS)
  const row: ScaleRow = { n, procs, loadAtStart: loadavg().map(round1), errors: [] }
  const dir = await mkdtemp(join(tmpdir(), 'pc-scale-bench-'))
  const children: Child[] = []
  const relays: RelayProcess[] = []
  let requester: { stop(): Promise<void> } | undefined
  const count = (k: 'started' | 'reserved') => children.reduce((t, c) => t + c[k], 0)
  const t0 = performance.now()
  const m0 = machineBusyMs()
  // Interrupted: the relays are plain child processes (their peers exit when this process goes).
  const onSignal = () => {
    for (const r of relays) r.child.kill('SIGTERM')
    process.exit(130)
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    const ports = await startRelays(dir, relays)
    const addrs = relays.map((x) => x.multiaddrs[0]!)
    await sleep(2000) // peered, and past start-up's garbage
    const baseRss = relays.map((x) => procUsage(x.child.pid!).rssBytes)
    o.log(`scale ${n}: ${procs} processes`)
    for (let i = 0; i < procs; i++) {
      const k = Math.floor(n / procs) + (i < n % procs ? 1 : 0)
      children.push(spawnPeers(join(dir, `peers${i}`), k, addrs))
    }
    await Promise.all(children.map((c) => whenReady(c, readyMs)))
    row.readyMs = Math.round(performance.now() - t0)
    row.startCores = round1((machineBusyMs() - m0) / row.readyMs / 0.1) / 10
    const ids = children.flatMap((c) => c.ids)
    await converge(n, row, children, relays)
    o.log(
      `scale ${n}: ready ${row.readyMs} ms, converged ${row.convergedMs ?? '–'}, settled ${row.settledMs ?? '–'}`,
    )
    const i0 = await snapshot(children, relays)
    await sleep(o.idleMs)
    const i1 = await snapshot(children, relays)
    row.idle = { ...windowCpu(i0, i1), adverts: advertRate(i0, i1) }
    row.relayConnsPerPeer = round1(mean(i1.peers.map((p) => p.relayConns)))

    const ctx = { n, row, o, dir, addrs, ids, children, relays }
    const req = await joinAndDispatch(ctx, (r) => {
      requester = r
    })
    const rss = req.relays.map((x) => x.rssBytes)
    row.relays = ports.map((port, i) => ({
      conns: connectionsTo(port),
      rssMiB: round1(rss[i]! / 2 ** 20),
      baseRssMiB: round1(baseRss[i]! / 2 ** 20),
    }))
    row.peersRssMiB = round1(req.stats.reduce((t, s) => t + s.rssBytes, 0) / 2 ** 20)
    for (const s of req.stats) row.errors.push(...s.errors)
  } catch (err) {
    const cores = round1((machineBusyMs() - m0) / (performance.now() - t0) / 0.1) / 10
    row.limit = `${(err as Error).message}`.slice(0, 400)
    if (row.readyMs == null)
      row.limit += `: ${count('started')} of ${n} peers started, ${count('reserved')} with a relay reservation; ${cores} cores busy meanwhile`
    o.log(`scale ${n}: stopped: ${row.limit}`)
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    row.loadAtEnd = loadavg().map(round1)
    row.freeMemMiB = Math.round(freemem() / 2 ** 20)
    await requester?.stop().catch(() => {})
    await Promise.all(children.map(stopChild))
    await Promise.all(relays.map((x) => x.stop()))
    await rm(dir, { recursive: true, force: true })
  }
  return row
}

/** Until every peer holds every other's advert, then until the swarm's advert rate is near steady. */
async function converge(n: number, row: ScaleRow, children: Child[], relays: RelayProcess[]) {
  const t0 = performance.now() - (row.readyMs ?? 0)
  for (;;) {
    const s = await snapshot(children, relays)
    const least = Math.min(...s.peers.map((p) => p.known))
    if (least >= n - 1) break
    if (performance.now() - t0 > (row.readyMs ?? 0) + CONVERGE_MS) {
      row.errors.push(`not converged: a peer knew ${least} of ${n - 1}`)
      return
    }
    await sleep(1000)
  }
  row.convergedMs = Math.round(performance.now() - t0)
  // Steady: each peer republishes every 15 s, so ~4 (n − 1) deliveries per peer per minute.
  const since = performance.now()
  const snaps: Snap[] = [await snapshot(children, relays)]
  for (;;) {
    await sleep(5000)
    snaps.push(await snapshot(children, relays))
    const w = snaps.at(-4)
    if (w && advertRate(w, snaps.at(-1)!).msgsPerMin <= 6 * (n - 1)) break
    if (performance.now() - since > SETTLE_MS) {
      row.errors.push(`advert rate still above 1.5× steady after ${SETTLE_MS / 1000} s`)
      return
    }
  }
  row.settledMs = Math.round(performance.now() - t0)
}

interface Ctx {
  n: number
  row: ScaleRow
  o: ScaleOptions
  dir: string
  /** The relays' multiaddrs, and their processes. */
  addrs: string[]
  relays: RelayProcess[]
  /** The contributors' PeerIds. */
  ids: string[]
  children: Child[]
}

/** A fresh requester: how soon it knows every contributor, then jobs at a steady rate. */
async function joinAndDispatch(
  { n, row, o, dir, addrs, relays, ids, children }: Ctx,
  started: (p: { stop(): Promise<void> }) => void,
): Promise<Snap> {
  const { createNodePeer } = await import('../node/peer.ts')
  const { isDirect } = await import('../src/net/link.ts')
  const { ADVERT_TOPIC } = await import('../src/shared/protocol.ts')
  const { mlpInput } = await import('../src/shared/mlp.ts')
  const j0 = performance.now()
  const req = await createNodePeer({
    dir: join(dir, 'requester'),
    relays: addrs,
    iceServers: [],
    contribute: false,
  })
  started(req)
  let adverts = 0
  req.node.services.pubsub.addEventListener('message', (e) => {
    if (e.detail.topic === ADVERT_TOPIC) adverts++
  })
  const want = new Set(ids)
  const seen = () => req.peers().filter((p) => want.has(p.id)).length
  while (seen() < n && performance.now() - j0 < JOIN_MS) await sleep(20)
  const relayMs = Math.round((req.status().relayConnectedMs ?? Number.NaN) - j0)
  row.join = { relayMs, seen: seen(), ...(seen() === n ? { allMs: Math.round(performance.now() - j0) } : {}) }
  o.log(`scale ${n}: requester saw ${row.join.seen}/${n} in ${row.join.allMs ?? '–'} ms`)
  const links = () => req.node.getConnections().filter(isDirect).length
  await sleep(5000) // its warm links: dials wait up to 3 s (the higher PeerId's grace) and take a moment
  row.links = { requesterWarm: links() }

  // A steady rate: two seconds to warm up (links open, contributors load the model), then the window.
  const tiny = catalog.find((e) => e.name === 'mlp-tiny')!
  const policy = { redundancy: 1, quorum: 1, adaptive: false }
  const errs: Record<string, number> = {}
  let firstError: string | undefined
  const run = async (count: number, lat?: number[]) => {
    const jobs: Promise<void>[] = []
    const start = performance.now()
    for (let i = 0; i < count; i++) {
      const due = start + (i * 1000) / RATE
      if (due > performance.now()) await sleep(due - performance.now())
      const x = { dtype: 'float32' as const, dims: tiny.inputs[0]!.dims, data: mlpInput(tiny.mlp!, i + 2) }
      const t = performance.now()
      const signal = AbortSignal.timeout(30_000)
      const job = req.submit('mlp-tiny', { x }, { policy, persist: false, signal })
      jobs.push(
        job.then(
          () => void lat?.push(performance.now() - t),
          (e: Error) => {
            if (!lat) return
            errs[e.name] = (errs[e.name] ?? 0) + 1
            firstError ??= e.message.slice(0, 300)
          },
        ),
      )
    }
    await Promise.all(jobs)
  }
  await run(RATE * 2)
  const lat: number[] = []
  const count = Math.round((RATE * o.jobsMs) / 1000)
  const b0 = await snapshot(children, relays)
  const a0 = adverts
  await run(count, lat)
  const b1 = await snapshot(children, relays)
  const failures = Object.values(errs).reduce((a, b) => a + b, 0)
  const d = dist(lat)
  row.dispatch = { rate: RATE, jobs: count, failures, errors: errs, p50: d.p50, p95: d.p95, max: d.max }
  if (firstError) row.dispatch.firstError = firstError
  const served = new Map(b0.peers.map((p) => [p.id, p.served]))
  const contributorLinks = b1.peers.map((p) => p.links)
  row.links = {
    ...row.links,
    requesterBusy: links(),
    contributorsMean: round1(mean(contributorLinks)),
    contributorsMax: Math.max(...contributorLinks),
    contributorsDialledMean: round1(mean(b1.peers.map((p) => p.outbound))),
    contributorsServing: b1.peers.filter((p) => p.served > (served.get(p.id) ?? 0)).length,
  }
  const min = (b1.at - b0.at) / 60_000
  row.busy = {
    ...windowCpu(b0, b1),
    adverts: advertRate(b0, b1),
    requesterAdvertsPerMin: round1((adverts - a0) / min),
  }
  // How fresh its view is: the age of the newest advert it holds from each contributor.
  const ages = req
    .peers()
    .filter((p) => want.has(p.id))
    .map((p) => (Date.now() - p.advert.ts) / 1000)
  // Its gossipsub score of each relay: below −80 (graylist) it drops everything they send.
  const ps = req.node.services.pubsub as unknown as { getScore?(id: string): number }
  const relayScore = Math.min(...addrs.map((a) => ps.getScore?.(a.split('/p2p/').pop()!) ?? Number.NaN))
  row.requester = {
    relay: req.status().relay,
    known: seen(),
    adverts,
    advertAgeS: round1(quantile(ages, 0.5)),
    relayScore: Math.round(relayScore),
  }
  o.log(`scale ${n}: dispatch p50 ${d.p50.toFixed(1)} ms p95 ${d.p95.toFixed(1)} ms, ${failures} failed`)
  return b1
}
