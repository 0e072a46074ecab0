/**
 * Bad input never crashes a contributor: each case gets a clear, typed error at the requester, and
 * the contributor tab serves the next job.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FrameDecoder } from '../../src/net/frame.ts'
import { JOB_PROTOCOL } from '../../src/shared/protocol.ts'
import { importUrl, serveModels, testModel } from '../helpers/models.ts'
import { peerId, type Swarm, startSwarm, waitForContributors } from '../helpers/swarm.ts'

describe('bad input', () => {
  let swarm: Swarm
  let b: string

  beforeAll(async () => {
    swarm = await startSwarm({ tabs: 2 })
    b = await peerId(swarm.tabs[1]!)
    await swarm.tabs[1]!.evaluate(() => window.__peer.setContributing(true))
    await waitForContributors(swarm.tabs[0]!, [b])
  })
  afterAll(() => swarm?.stop())

  /** Runs a job on B from A and returns the error name and message, or 'ok'. */
  const submit = (dims: number[], opts: { model?: string; peer?: string } = {}) =>
    swarm.tabs[0]!.evaluate(
      async ({ dims, model, peer }) => {
        const n = dims.reduce((a, b) => a * b, 1)
        try {
          const r = await window.__peer.submit(
            model,
            { x: { dtype: 'float32', dims, data: new Float32Array(n).fill(0.25) } },
            { peer, timeoutMs: 20_000 },
          )
          return { ok: true, worker: r.worker, message: '', name: '' }
        } catch (e) {
          return { ok: false, worker: '', name: (e as Error).name, message: (e as Error).message }
        }
      },
      { dims, model: opts.model ?? 'mlp-tiny', peer: opts.peer ?? b },
    )

  const stillServes = async () => {
    const r = await submit([1, 16])
    expect(r).toMatchObject({ ok: true, worker: b })
  }

  const unknown = 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'

  it('rejects a job for an unknown model CID', async () => {
    const r = await submit([1, 16], { model: unknown })
    expect(r.name).toBe('JobRejectedError')
    expect(r.message).toContain('unknown-model')
    await stillServes()
  })

  it('rejects a malformed frame with bad-request', async () => {
    const reply = await swarm.tabs[0]!.evaluate(
      async ({ b, proto }) => {
        const conn = window.__peer.node
          .getConnections()
          .find((c) => c.remotePeer.toString() === b && c.remoteAddr.toString().includes('/webrtc'))
        if (!conn) throw new Error('no direct connection')
        const stream = await conn.newStream(proto)
        stream.send(Uint8Array.from([6, 0xff, 0xfe, 0x01, 0x02, 0x03, 0x04])) // 6-byte body that is not CBOR
        const out: number[] = []
        for await (const chunk of stream) out.push(...chunk.subarray())
        return out
      },
      { b, proto: JOB_PROTOCOL },
    )
    const [frame] = new FrameDecoder(4096).push(Uint8Array.from(reply))
    expect(frame).toMatchObject({ t: 'reject', code: 'bad-request' })
    await stillServes()
  })

  it("fails a catalog model's wrong input at the requester, before anything is sent", async () => {
    const jobs = () => swarm.tabs[0]!.evaluate(async () => (await window.__peer.jobs(10_000)).length)
    const before = await jobs()
    const r = await submit([1, 17])
    expect(r.name).toBe('InvalidTensorError')
    expect(r.message).toContain('[1,16]')
    expect(await jobs()).toBe(before) // no job was started, so none was sent
  })

  it('rejects an oversized input with too-large', async () => {
    // A model outside the catalog, so only the contributor's own limit can refuse it.
    const r = await submit([1, 5_000_000], { model: unknown }) // 20 MB of float32, over the 16 MiB limit
    expect(r.name).toBe('JobRejectedError')
    expect(r.message).toContain('too-large')
    await stillServes()
  })

  it('rejects a job sent to a tab that is not contributing', async () => {
    await swarm.tabs[1]!.evaluate(() => window.__peer.setContributing(false))
    const r = await submit([1, 16])
    expect(r.name).toBe('JobRejectedError')
    expect(r.message).toContain('not-contributing')
    await swarm.tabs[1]!.evaluate(() => window.__peer.setContributing(true))
    await stillServes()
  })

  it('concurrent good and malformed jobs on a fresh contributor: each gets its own outcome', async () => {
    // A fresh tab calibrates its thread count on its first job (threads 'auto'); jobs that come
    // meanwhile wait on that run, and a malformed one must fail alone. The model is not a catalog
    // one (the requester checks those itself); eight slots let the jobs run at once.
    const m = await testModel('bad-input-mlp', { seed: 5, layers: [16, 32, 8], batch: 1 })
    const c = await swarm.openTab()
    const cId = await peerId(c)
    for (const t of [swarm.tabs[0]!, c]) {
      await serveModels(t, [m])
      await importUrl(t, m)
    }
    await c.evaluate(async () => {
      await window.__peer.controls.update({ maxJobs: 8 })
      await window.__peer.setContributing(true)
    })
    await waitForContributors(swarm.tabs[0]!, [cId])
    // The model takes [1, 16]; the first job, which calibrates, is malformed.
    const widths = [17, 16, 16, 18, 16, 16, 19, 16, 16, 20, 16, 16, 21, 16, 16, 22]
    const results = await Promise.all(widths.map((w) => submit([1, w], { peer: cId, model: m.cid })))
    for (const [i, r] of results.entries()) {
      if (widths[i] === 16) expect(r, r.message).toMatchObject({ ok: true, worker: cId })
      else {
        expect(r.name).toBe('JobRejectedError')
        expect(r.message).toContain('bad-request')
        expect(r.message).toContain(`dims [1,${widths[i]}]`) // its own input, no other job's
      }
    }
  })
})
