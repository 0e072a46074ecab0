/**
 * The working swarm, end to end with real parts: a relay process, three Chromium tabs, direct
 * WebRTC, onnxruntime-web in workers, IndexedDB. B and C contribute; A submits.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import catalog from '../../public/models/catalog.json' with { type: 'json' }
import { mlpForward, mlpInput, mlpWeights } from '../../src/shared/mlp.ts'
import { decodeReceipt, verifyReceipt } from '../../src/trust/receipt.ts'
import { peerId, type Swarm, startSwarm, waitForContributors, waitReady } from '../helpers/swarm.ts'

const tiny = catalog.find((e) => e.name === 'mlp-tiny')!
const spec = tiny.mlp! // vendor entries in the catalog have no mlp spec
const layers = mlpWeights(spec)
const N = 24

interface Ran {
  worker: string
  /** Every contributor whose agreeing result verified the job (2 under the default policy). */
  workers: string[]
  y: number[]
  receipt: number[]
  x: number[]
}

/** Submits `n` jobs with distinct seeded inputs from tab A; returns outputs and raw receipt bytes. */
function submitBatch(swarm: Swarm, n: number, seed0: number): Promise<Ran[]> {
  const inputs = Array.from({ length: n }, (_, i) => Array.from(mlpInput(spec, seed0 + i)))
  return swarm.tabs[0]!.evaluate(
    async ({ inputs, dims }) => {
      const peer = window.__peer
      return Promise.all(
        inputs.map(async (x) => {
          const r = await peer.submit('mlp-tiny', {
            x: { dtype: 'float32', dims, data: Float32Array.from(x) },
          })
          const rec = (await peer.jobs(1000)).find((j) => j.jobCid === r.job)!
          return {
            worker: r.worker,
            workers: r.workers,
            y: Array.from(r.outputs.y!.data as Float32Array),
            receipt: Array.from(rec.receipt!),
            x,
          }
        }),
      )
    },
    { inputs, dims: tiny.inputs[0]!.dims },
  )
}

describe('swarm', () => {
  let swarm: Swarm
  let ids: string[]

  beforeAll(async () => {
    swarm = await startSwarm({ tabs: 3 })
    ids = await Promise.all(swarm.tabs.map(peerId))
    for (const t of swarm.tabs.slice(1)) await t.evaluate(() => window.__peer.setContributing(true))
    await waitForContributors(swarm.tabs[0]!, ids.slice(1))
  })
  afterAll(() => swarm?.stop())

  const checkBatch = async (ran: Ran[]) => {
    expect(ran).toHaveLength(N)
    for (const r of ran) {
      const want = mlpForward(spec, layers, Float32Array.from(r.x))
      expect(r.y).toHaveLength(want.length)
      const maxDiff = Math.max(...r.y.map((v, i) => Math.abs(v - want[i]!)))
      expect(maxDiff).toBeLessThan(1e-4)
      // Independent check in Node: the stored receipt verifies offline.
      const receipt = await verifyReceipt(decodeReceipt(Uint8Array.from(r.receipt)), { requester: ids[0]! })
      expect(receipt.body.worker).toBe(r.worker)
      expect(receipt.body.model.toString()).toBe(tiny.cid)
    }
    // Every agreeing replica counts: the first-listed one alone is always B when C starts slowly.
    const workers = new Set(ran.flatMap((r) => r.workers))
    expect(workers.has(ids[0]!)).toBe(false)
    expect([...workers].every((w) => ids.slice(1).includes(w))).toBe(true)
    return workers
  }

  it('A submits jobs that B and C compute, with correct outputs and verified receipts', async () => {
    const workers = await checkBatch(await submitBatch(swarm, N, 100))
    expect(workers.size).toBe(2) // both contributors took work
  })

  it("knows each link's ICE state and path: host candidates on one machine, shown in the Peers table", async () => {
    const a = swarm.tabs[0]!
    await a.waitForFunction(
      (want) => want.every((id) => window.__peer.peers().find((p) => p.id === id)?.path === 'host'),
      ids.slice(1),
      { timeout: 20_000 },
    )
    // The RTCPeerConnection under each direct link is reachable (an internal of @libp2p/webrtc).
    const states = await a.evaluate(() =>
      window.__peer.node
        .getConnections()
        .filter((c) => c.remoteAddr.toString().includes('/webrtc'))
        .map(
          (c) =>
            (c as unknown as { maConn?: { peerConnection?: RTCPeerConnection } }).maConn?.peerConnection
              ?.connectionState ?? 'none',
        ),
    )
    expect(states.length).toBeGreaterThanOrEqual(2)
    expect(states.every((s) => s === 'connected')).toBe(true)
    for (const id of ids.slice(1)) {
      await expect.poll(() => a.getAttribute(`#peers tr[data-peer="${id}"]`, 'data-path')).toBe('host')
      expect(await a.textContent(`#peers tr[data-peer="${id}"]`)).toContain('direct · host')
    }
    expect((await a.evaluate(() => window.__peer.status().paths)).host).toBeGreaterThanOrEqual(2)
    expect(await a.textContent('#links')).toMatch(/\d+ host/)
    expect(await a.isHidden('#network-warning')).toBe(true) // loopback needs no ICE servers
    // Contributing asked for persistent storage, and the header says what the browser granted.
    const b = swarm.tabs[1]!
    expect(['persisted', 'best-effort']).toContain(await b.evaluate(() => window.__peer.status().storage))
    expect(await b.textContent('#storage-state')).toMatch(/^Storage: (persistent|best effort)/)
  })

  it('a job submitted with persist: false is verified and leaves no record; the default one does', async () => {
    const x = Array.from(mlpInput(spec, 900))
    const r = await swarm.tabs[0]!.evaluate(
      async ({ x, dims }) => {
        const peer = window.__peer
        const inputs = { x: { dtype: 'float32' as const, dims, data: Float32Array.from(x) } }
        // The same id twice at once: one job, one outcome, persisted or not.
        const [off, off2, on, on2] = await Promise.all([
          peer.submit('mlp-tiny', inputs, { id: 'not-persisted', persist: false }),
          peer.submit('mlp-tiny', inputs, { id: 'not-persisted', persist: false }),
          peer.submit('mlp-tiny', inputs, { id: 'persisted' }),
          peer.submit('mlp-tiny', inputs, { id: 'persisted' }),
        ])
        const records = await peer.jobs(1000)
        return {
          y: Array.from(off.outputs.y!.data as Float32Array),
          states: [off.state, on.state],
          same: [off.job === off2.job, on.job === on2.job, off.job !== on.job],
          stored: [await peer.job('not-persisted'), await peer.job('persisted')].map(
            (j) => j?.status ?? null,
          ),
          listed: records.filter((j) => j.id === 'not-persisted' || j.id === 'persisted').map((j) => j.id),
        }
      },
      { x, dims: tiny.inputs[0]!.dims },
    )
    const want = mlpForward(spec, layers, Float32Array.from(x))
    expect(Math.max(...r.y.map((v, i) => Math.abs(v - want[i]!)))).toBeLessThan(1e-4)
    expect(r.states).toEqual(['verified', 'verified'])
    expect(r.same).toEqual([true, true, true])
    expect(r.stored).toEqual([null, 'verified'])
    expect(r.listed).toEqual(['persisted'])
  })

  it('keeps working over the open WebRTC connections after the relay stops', async () => {
    await swarm.relay.stop()
    await swarm.tabs[0]!.waitForFunction(() => window.__peer.status().relay === 'disconnected', null, {
      timeout: 10_000,
    })
    await checkBatch(await submitBatch(swarm, N, 500))
  })

  it('a reloaded tab keeps its PeerId', async () => {
    const tab = swarm.tabs[2]!
    await tab.reload()
    await waitReady(tab)
    expect(await peerId(tab)).toBe(ids[2])
  })
})
