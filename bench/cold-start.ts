/**
 * Cold start and single-job latency between two real tabs: ms since navigation until the relay is
 * connected, the first advert is seen, the worker is ready, the first direct link is up, and the
 * first remote result arrives; then the round trip of sequential mlp-tiny jobs.
 */
import { peerId, startSwarm, waitForContributors } from '../test/helpers/swarm.ts'

export interface ColdStart {
  contributor: { relayConnectedMs?: number; engineReadyMs?: number }
  requester: {
    relayConnectedMs?: number
    firstAdvertMs?: number
    firstDirectMs?: number
    engineReadyMs?: number
    firstResultMs: number
  }
  rtt: { n: number; p50: number; p95: number; min: number }
}

const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!

export async function coldStart(jobs = 50): Promise<ColdStart> {
  const swarm = await startSwarm({ tabs: 1 })
  try {
    const a = swarm.tabs[0]!
    await a.evaluate(() => window.__peer.setContributing(true))
    await a.waitForFunction(() => window.__peer.capabilities().eps.length > 0)
    const aId = await peerId(a)
    const b = await swarm.browser.newPage()
    await b.goto(swarm.web.url)
    const firstResultMs = await b.evaluate(async (target) => {
      while (!window.__peer?.peers().some((p) => p.id === target && p.direct && p.advert.contributing)) {
        await new Promise((r) => setTimeout(r, 5))
      }
      const x = { dtype: 'float32' as const, dims: [1, 16], data: new Float32Array(16).fill(0.5) }
      await window.__peer.submit('mlp-tiny', { x }, { peer: target })
      return performance.now()
    }, aId)
    await waitForContributors(b, [aId])
    const rtts = await b.evaluate(
      async ({ target, n }) => {
        const x = { dtype: 'float32' as const, dims: [1, 16], data: new Float32Array(16).fill(0.5) }
        const out: number[] = []
        for (let i = 0; i < n; i++)
          out.push((await window.__peer.submit('mlp-tiny', { x }, { peer: target })).roundTripMs)
        return out
      },
      { target: aId, n: jobs },
    )
    const sa = await a.evaluate(() => window.__peer.status())
    const sb = await b.evaluate(() => window.__peer.status())
    return {
      contributor: { relayConnectedMs: sa.relayConnectedMs, engineReadyMs: sa.engineReadyMs },
      requester: {
        relayConnectedMs: sb.relayConnectedMs,
        firstAdvertMs: sb.firstAdvertMs,
        firstDirectMs: sb.firstDirectMs,
        engineReadyMs: sb.engineReadyMs,
        firstResultMs,
      },
      rtt: { n: rtts.length, p50: pct(rtts, 0.5), p95: pct(rtts, 0.95), min: Math.min(...rtts) },
    }
  } finally {
    await swarm.stop()
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await import('../src/relay/polyfill.ts')
  console.log(JSON.stringify(await coldStart(), null, 2))
}
