/**
 * 4. Cold start between two real app tabs (index.html), fresh browser profile each time: ms since
 * navigation until the page is interactive, the relay is connected, the first advert is seen, the worker is ready, the first
 * direct link is up, and the first remote result arrives (the contributor fetches the model and
 * creates its session inside that time).
 */
import { peerId, startSwarm } from '../test/helpers/swarm.ts'

export interface ColdStart {
  contributor: { relayConnectedMs?: number; engineReadyMs?: number }
  requester: {
    /** The app's views are mounted on a started peer (body[data-ready]): a person can use the page. */
    interactiveMs?: number
    relayConnectedMs?: number
    firstAdvertMs?: number
    firstDirectMs?: number
    engineReadyMs?: number
    /** max(relay connected, engine ready): the tab can submit or serve. */
    readyMs?: number
    firstResultMs: number
  }
  /** The first job's round trip and the contributor's share of it (queue = model load + session). */
  firstJob: { roundTripMs: number; runMs: number; queueMs: number }
}

/**
 * `contributor`: the contributor tab's path and query (default: the app, switched on after load);
 * the second tab opens `settleMs` after the contributor is ready.
 */
export async function coldStart(contributor = '', settleMs = 2000): Promise<ColdStart> {
  const swarm = await startSwarm({ tabs: 0 })
  try {
    const a = await swarm.openTab(contributor)
    await a.evaluate(() => window.__peer.setContributing(true))
    await a.waitForFunction(() => window.__peer.capabilities().eps.length > 0)
    // The contributor has been open a while, as contributors are: its start-up work is not B's.
    await a.waitForTimeout(settleMs)
    const aId = await peerId(a)
    const b = await swarm.browser.newIsolatedPage() // a fresh profile: nothing cached
    await b.goto(swarm.web.url)
    const first = await b.evaluate(async (target) => {
      while (!window.__peer?.peers().some((p) => p.id === target && p.direct && p.advert.contributing)) {
        await new Promise((r) => setTimeout(r, 5))
      }
      const x = { dtype: 'float32' as const, dims: [1, 16], data: new Float32Array(16).fill(0.5) }
      const r = await window.__peer.submit('mlp-tiny', { x }, { peer: target })
      const t = r.receipt.body.timing
      return {
        at: performance.now(),
        roundTripMs: r.roundTripMs,
        runMs: t.runUs / 1000,
        queueMs: t.queueUs / 1000,
      }
    }, aId)
    // A requester whose engine stays idle may never report it ready: wait a little, not forever.
    await b
      .waitForFunction(() => window.__peer.status().engineReadyMs !== undefined, null, { timeout: 5_000 })
      .catch(() => {})
    const sa = await a.evaluate(() => window.__peer.status())
    const sb = await b.evaluate(() => window.__peer.status())
    const interactiveMs = await b.evaluate(
      () => performance.getEntriesByName('peer-compute:interactive')[0]?.startTime,
    )
    const ready =
      sb.relayConnectedMs !== undefined && sb.engineReadyMs !== undefined
        ? Math.max(sb.relayConnectedMs, sb.engineReadyMs)
        : undefined
    return {
      contributor: { relayConnectedMs: sa.relayConnectedMs, engineReadyMs: sa.engineReadyMs },
      requester: {
        interactiveMs,
        relayConnectedMs: sb.relayConnectedMs,
        firstAdvertMs: sb.firstAdvertMs,
        firstDirectMs: sb.firstDirectMs,
        engineReadyMs: sb.engineReadyMs,
        ...(ready === undefined ? {} : { readyMs: ready }),
        firstResultMs: first.at,
      },
      firstJob: { roundTripMs: first.roundTripMs, runMs: first.runMs, queueMs: first.queueMs },
    }
  } finally {
    await swarm.stop()
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await import('../node/relay/polyfill.ts')
  console.log(JSON.stringify(await coldStart(process.argv[2]), null, 2))
}
