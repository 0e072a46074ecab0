/**
 * 7. Across NAT (issue 20 §6), in the NAT lab of test/helpers/netlab.ts (root only; skipped with its
 * reason otherwise): ms from a requester first seeing a contributor's advert to that contributor's
 * first result, on loopback, through STUN (plain NAT) and through TURN (symmetric NAT); bench-10ms
 * jobs/s through TURN over the same through STUN; coturn's CPU per MiB it relays.
 */
import { readFileSync } from 'node:fs'
import type { Page } from 'playwright-core'
import type { TestBrowser } from '../test/helpers/chromium.ts'
import { startCoturn } from '../test/helpers/coturn.ts'
import { launchLabBrowser, startLabRelay, startLabWeb } from '../test/helpers/lab-services.ts'
import { createLab } from '../test/helpers/netlab.ts'
import { peerId, startSwarm, waitForContributors, waitReady } from '../test/helpers/swarm.ts'
import { MiB, median } from './stats.ts'

export type NatPath = 'loopback' | 'stun' | 'turn'

export interface NatBench {
  /** Why the section did not run (not root, no namespaces). */
  skipped?: string
  /** Per path, one fresh requester tab per sample: first advert seen (either side) → link direct, and → first result (ms). */
  link?: Partial<Record<NatPath, { directMs: number[]; resultMs: number[]; path?: string }>>
  /** bench-10ms batches to one contributor over each path, in interleaved rounds (jobs/s). */
  throughput?: { model: string; jobs: number; stun: number[]; turn: number[]; turnVsStun: number }
  /** coturn over the TURN batches: its CPU (/proc/<pid>/stat) and the UDP bytes it received. */
  turnCpu?: { cpuMs: number; mib: number; msPerMiB: number }
}

const BENCH = 'bench/page.html'
const LINK_MODEL = 'bench-1ms'
const SINGLE = { redundancy: 1, quorum: 1, adaptive: false }

/**
 * One fresh requester tab: ms from the first advert either side saw of the other (whichever side
 * saw first dials, or makes the other dial) to a direct link, and to the first result.
 */
async function linkSample(open: () => Promise<Page>, contributor: Page, target: string) {
  const page = await open()
  try {
    const r = await page.evaluate(
      // No named functions in here: tsx's keepNames would wrap them in a helper the page lacks.
      async ({ target, model, policy }) => {
        const peer = window.__peer
        for (;;) {
          if (peer.peers().some((p) => p.id === target && p.advert.contributing)) break
          await new Promise((ok) => setTimeout(ok, 5))
        }
        const seenAt = peer.peers().find((p) => p.id === target)!.firstSeenAt // Date.now() at the advert
        while (!peer.peers().find((p) => p.id === target)?.direct)
          await new Promise((ok) => setTimeout(ok, 5))
        const directAt = Date.now()
        await peer.submit(model, window.__bench.inputs(model), { peer: target, policy })
        const path = peer.peers().find((p) => p.id === target)?.path
        return { id: peer.id, seenAt, directAt, resultAt: Date.now(), path }
      },
      { target, model: LINK_MODEL, policy: SINGLE },
    )
    // Both tabs run on this machine: their Date.now() clocks are one.
    const theirs = await contributor.evaluate(
      (id) => window.__peer.peers().find((p) => p.id === id)?.firstSeenAt,
      r.id,
    )
    const t0 = Math.min(r.seenAt, theirs ?? r.seenAt)
    return { directMs: r.directAt - t0, resultMs: r.resultAt - t0, path: r.path }
  } finally {
    await page.context().close()
  }
}

/** `reps` samples after one unrecorded warm-up (the contributor's model load and session). */
async function linkSeries(open: () => Promise<Page>, contributor: Page, reps: number) {
  const target = await peerId(contributor)
  await linkSample(open, contributor, target)
  const out = { directMs: [] as number[], resultMs: [] as number[], path: undefined as string | undefined }
  for (let i = 0; i < reps; i++) {
    const s = await linkSample(open, contributor, target)
    out.directMs.push(s.directMs)
    out.resultMs.push(s.resultMs)
    out.path ??= s.path
  }
  return out
}

/** `n` jobs of `model` on `target` only, `lanes` outstanding at a time: jobs/s. */
const batch = (page: Page, target: string, model: string, n: number, lanes = 4) =>
  page.evaluate(
    async ({ target, model, n, lanes, policy }) => {
      const inputs = window.__bench.inputs(model)
      let left = n
      const t0 = performance.now()
      await Promise.all(
        Array.from({ length: lanes }, async () => {
          while (left-- > 0)
            await window.__peer.submit(model, inputs, { peer: target, policy, persist: false })
        }),
      )
      return n / ((performance.now() - t0) / 1000)
    },
    { target, model, n, lanes, policy: SINGLE },
  )

const cpuMsOf = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) * 10 // utime + stime, all threads, USER_HZ 100
}

export async function natBench(dist: string, quick: boolean, log: (s: string) => void): Promise<NatBench> {
  if (process.getuid?.() !== 0) {
    const skipped = 'skipped: the NAT lab needs root (network namespaces, iptables); run the bench as root'
    log(`NAT section ${skipped}`)
    return { skipped }
  }
  const reps = quick ? 2 : 5
  const out: NatBench = { link: {} }
  const benchTab = async (browser: TestBrowser, url: string, query = '') => {
    const page = await browser.newIsolatedPage()
    await page.goto(`${url}${BENCH}${query}`)
    await waitReady(page)
    return page
  }

  // Loopback: the plain swarm on 127.0.0.1, no ICE servers.
  const swarm = await startSwarm({ tabs: 0 })
  try {
    const c = await swarm.openTab(`${BENCH}?contribute=1&threads=1`)
    const open = () => benchTab(swarm.browser, swarm.web.url)
    out.link!.loopback = await linkSeries(open, c, reps)
  } finally {
    await swarm.stop()
  }

  // Requester in home 1; contributors behind plain NAT (home 2) and symmetric NAT (home 3).
  const lab = await createLab({ homes: ['nat', 'nat', 'symmetric'] }).catch((err) => {
    throw new Error(`the NAT lab could not be built: ${(err as Error).message}`)
  })
  const browsers: TestBrowser[] = []
  try {
    const [turn, relay] = await Promise.all([startCoturn(lab), startLabRelay(lab)])
    const web = await startLabWeb(lab, {
      root: dist,
      configFile: relay.addrFile,
      ice: { stun: [turn.stunUrl], turn: [turn.turnUrl], secret: turn.secret },
    })
    for (const h of lab.homes) browsers.push(await launchLabBrowser(lab, h, { origins: [web.origin] }))
    const [home1, home2, home3] = browsers as [TestBrowser, TestBrowser, TestBrowser]
    const [b, c] = await Promise.all([
      benchTab(home2, web.url, '?contribute=1&threads=1'),
      benchTab(home3, web.url, '?contribute=1&threads=1'),
    ])
    const [bId, cId] = await Promise.all([peerId(b), peerId(c)])
    out.link!.stun = await linkSeries(() => benchTab(home1, web.url), b, reps)
    log(`NAT: advert → result through STUN p50 ${median(out.link!.stun.resultMs).toFixed(0)} ms`)
    out.link!.turn = await linkSeries(() => benchTab(home1, web.url), c, reps)
    log(`NAT: advert → result through TURN p50 ${median(out.link!.turn.resultMs).toFixed(0)} ms`)

    // Throughput: one requester, both contributors warm; STUN and TURN batches interleaved.
    const a = await benchTab(home1, web.url)
    await waitForContributors(a, [bId, cId]).catch(async (err) => {
      const known = await a.evaluate(() =>
        window.__peer.peers().map((p) => ({ id: p.id, direct: p.direct, path: p.path, err: p.linkError })),
      )
      const refused = turn
        .log()
        .split('\n')
        .filter((l) => /error|refus|4\d\d|508/i.test(l))
      const allocations = turn.allocations().length
      throw new Error(
        `${(err as Error).message}: ${JSON.stringify({ bId, cId, known, allocations })}\n${refused.slice(-20).join('\n')}`,
      )
    })
    const model = 'bench-10ms'
    const jobs = quick ? 20 : 60
    await Promise.all([batch(a, bId, model, 2), batch(a, cId, model, 2)])
    // Count the UDP bytes coturn receives (all it relays, plus STUN keep-alives) in the public namespace.
    lab.exec(lab.publicNs, ['iptables', '-w', '-I', 'INPUT', '-p', 'udp'])
    const udpIn = () =>
      Number(lab.exec(lab.publicNs, ['iptables', '-w', '-nvxL', 'INPUT', '1']).trim().split(/\s+/)[1])
    const tp = { model, jobs, stun: [] as number[], turn: [] as number[], turnVsStun: 0 }
    let cpuMs = 0
    let bytes = 0
    for (let round = 0; round < (quick ? 1 : 3); round++) {
      tp.stun.push(await batch(a, bId, model, jobs))
      const [cpu0, in0] = [cpuMsOf(turn.proc.pid), udpIn()]
      tp.turn.push(await batch(a, cId, model, jobs))
      cpuMs += cpuMsOf(turn.proc.pid) - cpu0
      bytes += udpIn() - in0
    }
    tp.turnVsStun = median(tp.turn) / median(tp.stun)
    out.throughput = tp
    out.turnCpu = { cpuMs, mib: bytes / MiB, msPerMiB: cpuMs / (bytes / MiB) }
    const paths = await a.evaluate(
      (ids) => ids.map((id) => window.__peer.peers().find((p) => p.id === id)?.path),
      [bId, cId],
    )
    if (paths[0] !== 'stun' || paths[1] !== 'turn')
      throw new Error(`NAT links took paths ${paths.join(', ')}`)
  } finally {
    await Promise.all(browsers.map((br) => br.close().catch(() => {})))
    await lab.close()
  }
  return out
}
