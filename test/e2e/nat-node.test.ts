/**
 * Node peers across NAT, in the lab (test/helpers/netlab.ts): the built CLI runs inside lab homes,
 * a tab in another home. A (tab, home 1, NAT) submits; N1 (`contribute`, home 2, NAT) has STUN and
 * TURN from --ice flags; N2 (`contribute`, home 3, symmetric NAT: only TURN joins it) takes its
 * relays and minted TURN credentials from the site (--config URL), as a tab does. A tab given STUN
 * only reaches N2 through N2's own relay candidate. Then the reverse: a Node requester (`submit`)
 * in the symmetric home and A contributing.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { loadOrCreateKey } from '../../node/relay/key.ts'
import catalog from '../../public/models/catalog.json' with { type: 'json' }
import { mlpForward, mlpInput, mlpWeights } from '../../src/shared/mlp.ts'
import { readNpy, writeNpy } from '../../src/tasks/npy.ts'
import type { TestBrowser } from '../helpers/chromium.ts'
import { type Coturn, labPeerId, startCoturn, turnCredentials } from '../helpers/coturn.ts'
import { type LabContributor, runLabCli, startLabContributor } from '../helpers/lab-cli.ts'
import {
  type LabRelay,
  type LabWeb,
  launchLabBrowser,
  startLabRelay,
  startLabWeb,
} from '../helpers/lab-services.ts'
import { createLab, type Lab } from '../helpers/netlab.ts'
import { peerId, waitLink, waitReady } from '../helpers/swarm.ts'

const DIST = resolve(process.env.PC_DIST ?? resolve(import.meta.dirname, '../../dist'))
const tiny = catalog.find((e) => e.name === 'mlp-tiny')!
const spec = tiny.mlp!
const layers = mlpWeights(spec)
const N = 10
/** The name in N1's TURN username (`expiry:name`), passed with --ice-username. */
const N1_TURN_NAME = labPeerId('NodeN1')
/** One replica per job, on the named contributor: each job crosses exactly the link under test. */
const SINGLE = { redundancy: 1, quorum: 1, adaptive: false }

/**
 * `n` mlp-tiny jobs from `page`, all at once, each on `worker` only: seeds, workers and outputs.
 * `dropMs`: the link to `worker` is closed that long after they were submitted, as a link ICE
 * reported disconnected is.
 */
function batch(page: Page, worker: string, n: number, seed0: number, dropMs?: number) {
  const seeds = Array.from({ length: n }, (_, i) => seed0 + i)
  return page.evaluate(
    ({ inputs, seeds, dims, worker, policy, dropMs }) => {
      if (dropMs != null)
        setTimeout(() => {
          for (const c of window.__peer.node.getConnections())
            if (c.remotePeer.toString() === worker) c.abort(new Error('ICE disconnected (test)'))
        }, dropMs)
      return Promise.all(
        inputs.map(async (x, i) => {
          const r = await window.__peer.submit(
            'mlp-tiny',
            { x: { dtype: 'float32', dims, data: Float32Array.from(x) } },
            { peer: worker, policy },
          )
          return { seed: seeds[i]!, workers: r.workers, y: Array.from(r.outputs.y!.data as Float32Array) }
        }),
      )
    },
    {
      inputs: seeds.map((s) => Array.from(mlpInput(spec, s))),
      seeds,
      dims: tiny.inputs[0]!.dims,
      worker,
      policy: SINGLE,
      dropMs,
    },
  )
}

const maxErr = (y: ArrayLike<number>, seed: number) => {
  const want = mlpForward(spec, layers, mlpInput(spec, seed))
  return Math.max(...Array.from(y, (v, i) => Math.abs(v - want[i]!)))
}

/** Links `page` to `node` over `path`, then runs N jobs there: each on that node alone, each right. */
async function runsOn(
  page: Page,
  node: string,
  path: 'stun' | 'turn',
  seed0: number,
  dropMs?: number,
): Promise<void> {
  await waitLink(page, node, path)
  const ran = await batch(page, node, N, seed0, dropMs)
  expect(ran).toHaveLength(N)
  for (const r of ran) {
    expect(r.workers).toEqual([node])
    expect(maxErr(r.y, r.seed)).toBeLessThan(1e-4)
  }
}

describe('Node peers across NAT', () => {
  let lab: Lab
  let turn: Coturn
  let relay: LabRelay
  let web: LabWeb
  let stunOnly: LabWeb
  let browser: TestBrowser | undefined
  let a: Page
  let aId: string
  let nodes: LabContributor[] = []
  let scratch: string

  beforeAll(async () => {
    if (!existsSync(join(DIST, 'index.html'))) throw new Error(`${DIST} is missing: run \`npm run build\``)
    scratch = mkdtempSync(join(tmpdir(), 'pc-nat-node-'))
    lab = await createLab({ homes: ['nat', 'nat', 'symmetric'] })
    ;[turn, relay] = await Promise.all([startCoturn(lab), startLabRelay(lab)])
    web = await startLabWeb(lab, {
      root: DIST,
      configFile: relay.addrFile,
      ice: { stun: [turn.stunUrl], turn: [turn.turnUrl], secret: turn.secret },
    })
    // The same swarm, but a site that gives tabs STUN only: a tab from it has no relay candidate.
    stunOnly = await startLabWeb(lab, {
      root: DIST,
      configFile: relay.addrFile,
      port: 8081,
      ice: { stun: [turn.stunUrl] },
    })
    browser = await launchLabBrowser(lab, lab.homes[0]!, { origins: [web.origin, stunOnly.origin] })
    a = await browser.newIsolatedPage()
    a.on('pageerror', (e) => console.error(`[A] page error: ${e.message}`))
    const { username, credential } = turnCredentials(turn.secret, N1_TURN_NAME)
    const n1 = ['--relay', relay.multiaddrs[0]!, '--ice', turn.stunUrl, '--ice', turn.turnUrl]
    n1.push('--ice-username', username, '--ice-credential', credential, '--slots', '2')
    ;[, ...nodes] = await Promise.all([
      a.goto(web.url).then(() => waitReady(a)),
      startLabContributor(lab, lab.homes[1]!, n1),
      startLabContributor(lab, lab.homes[2]!, ['--config', web.url, '--slots', '2']),
    ])
    aId = await peerId(a)
  })

  // The Node peers' side of a failed test.
  beforeEach(({ onTestFailed }) => {
    onTestFailed(() => {
      for (const n of nodes) console.log(`--- ${n.id}\n${n.proc.output().split('\n').slice(-40).join('\n')}`)
    })
  })

  afterAll(async () => {
    await browser?.close().catch(() => {})
    await lab?.close()
    for (const d of [scratch, ...nodes.map((n) => n.dir)]) if (d) rmSync(d, { recursive: true, force: true })
  })

  it('the Node peers run behind NAT: their homes have no way out but their routers', () => {
    for (const h of lab.homes.slice(1)) {
      const links = lab.exec(h.ns, ['ip', '-o', 'link']).match(/^\d+: ([^:@]+)/gm)
      expect(links?.map((l) => l.split(': ')[1])).toEqual(['lo', 'eth0'])
      expect(lab.exec(h.ns, ['ip', 'route']).split('\n')[0]!.trim()).toBe(
        `default via ${h.ip.replace(/2$/, '1')} dev eth0`,
      )
    }
    // Both printed that they have ICE servers: N1 STUN and TURN from flags, N2 from the site.
    for (const n of nodes) expect(n.proc.output()).toMatch(/[1-9] ICE servers/)
  })

  it('a tab runs 10/10 jobs on a Node contributor behind plain NAT, over STUN', async () => {
    const n1 = nodes[0]!.id
    await runsOn(a, n1, 'stun', 100)
    // Its log line may reach us a moment after its receipt reached the tab.
    await expect
      .poll(() => nodes[0]!.proc.output().match(/job \S+ done/g)?.length ?? 0, { timeout: 5000 })
      .toBeGreaterThanOrEqual(N)
    expect(await a.evaluate((id) => window.__peer.peers().find((p) => p.id === id)?.path, n1)).toBe('stun')
    // N1 gathered a relay candidate too, with the TURN credentials its flags gave.
    const mine = turn.allocations().filter((u) => u.endsWith(`:${N1_TURN_NAME}`))
    expect(mine.length, turn.log().slice(-2000)).toBeGreaterThan(0)
  })

  it('a link closed mid-batch is dialled again at once: the 10 jobs pinned to it all run', async () => {
    const n1 = nodes[0]!.id
    const linkId = () =>
      a.evaluate(
        (id) =>
          window.__peer.node
            .getConnections()
            .find(
              (c) =>
                c.remotePeer.toString() === id &&
                c.status === 'open' &&
                c.remoteAddr.toString().includes('/webrtc'),
            )?.id,
        n1,
      )
    const before = await linkId()
    await runsOn(a, n1, 'stun', 500, 30)
    const after = await linkId()
    expect(after).toBeDefined()
    expect(after).not.toBe(before)
  })

  it('a tab runs 10/10 jobs on a Node contributor behind symmetric NAT, through TURN it minted from the site', async () => {
    const n2 = nodes[1]!.id
    await runsOn(a, n2, 'turn', 200)
    expect(await a.evaluate((id) => window.__peer.peers().find((p) => p.id === id)?.path, n2)).toBe('turn')
    // N2 allocated with what the site minted for its own PeerId (`expiry:<id>`), still valid.
    const mine = turn.allocations().filter((u) => u.endsWith(`:${n2}`))
    expect(mine.length, turn.log().slice(-2000)).toBeGreaterThan(0)
    expect(Number(mine[0]!.split(':')[0]) * 1000).toBeGreaterThan(Date.now())
  })

  it("a tab with STUN only reaches the symmetric-NAT Node contributor through the Node's own TURN relay", async () => {
    const n2 = nodes[1]!.id
    const s = await browser!.newIsolatedPage()
    await s.goto(stunOnly.url)
    await waitReady(s)
    expect(await s.evaluate(() => window.__peer.status().iceServers)).toBe(1)
    await runsOn(s, n2, 'turn', 400)
    await s.context().close()
  })

  it('a Node requester behind symmetric NAT submits to a tab in another home, through TURN', async () => {
    // Only A contributes now: the job must cross from the symmetric home to home 1.
    for (const n of nodes) await n.proc.stop()
    await a.evaluate(() => window.__peer.setContributing(true))
    const seed = 300
    const input = join(scratch, 'x.npy')
    writeFileSync(
      input,
      writeNpy({ dtype: 'float32', dims: tiny.inputs[0]!.dims, data: mlpInput(spec, seed) }),
    )
    const out = join(scratch, 'out')
    const dir = join(scratch, 'req')
    mkdirSync(dir)
    // Its key made beforehand, so the test knows its PeerId and which TURN allocations are its.
    const me = peerIdFromPrivateKey(await loadOrCreateKey(join(dir, 'peer.key'))).toString()
    const r = await runLabCli(lab, lab.homes[2]!, [
      'submit',
      'mlp-tiny',
      ...['--input', `x=${input}`, '--out', out, '--config', web.url, '--dir', dir],
      ...['--redundancy', '1', '--quorum', '1', '--no-adaptive', '--json', '--timeout', '45'],
    ])
    expect(r.code, r.out).toBe(0)
    const outcome = JSON.parse(r.out.trim().split('\n').at(-1)!) as { workers: string[] }
    expect(outcome.workers).toEqual([aId])
    const y = readNpy(new Uint8Array(readFileSync(join(out, 'y.npy'))))
    expect(maxErr(y.data as Float32Array, seed)).toBeLessThan(1e-4)
    // Its home maps every flow anew: it linked through TURN, with credentials the site minted for it.
    expect(
      turn.allocations().filter((u) => u.endsWith(`:${me}`)).length,
      turn.log().slice(-2000),
    ).toBeGreaterThan(0)
  })
})
