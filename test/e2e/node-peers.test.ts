/**
 * A mixed swarm: Chromium tabs and Node peers (`peer-compute contribute` / `submit`, the built CLI)
 * on one relay, over real WebRTC (node-datachannel on the Node side) and real onnxruntime (web in
 * the tabs, node in the processes). A requests; B and C contribute in tabs; N1 and N2 are Node contributors.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import catalog from '../../public/models/catalog.json' with { type: 'json' }
import { mlpForward, mlpInput, mlpWeights } from '../../src/shared/mlp.ts'
import { readNpy, writeNpy } from '../../src/tasks/npy.ts'
import { type CliContributor, runCli, spawnCli, startCliContributor } from '../helpers/cli.ts'
import { peerId, type Swarm, startSwarm, waitForContributors } from '../helpers/swarm.ts'

const tiny = catalog.find((e) => e.name === 'mlp-tiny')!
const spec = tiny.mlp!
const layers = mlpWeights(spec)

interface Ran {
  seed: number
  workers: string[]
  y: number[]
}

/** Submits `n` seeded mlp-tiny jobs from tab A under `policy`; each job's workers and output. */
function batch(swarm: Swarm, seeds: number[], policy: Record<string, unknown>): Promise<Ran[]> {
  const inputs = seeds.map((s) => Array.from(mlpInput(spec, s)))
  return swarm.tabs[0]!.evaluate(
    async ({ inputs, seeds, dims, policy }) =>
      Promise.all(
        inputs.map(async (x, i) => {
          const r = await window.__peer.submit(
            'mlp-tiny',
            { x: { dtype: 'float32', dims, data: Float32Array.from(x) } },
            { policy },
          )
          return { seed: seeds[i]!, workers: r.workers, y: Array.from(r.outputs.y!.data as Float32Array) }
        }),
      ),
    { inputs, seeds, dims: tiny.inputs[0]!.dims, policy },
  )
}

function expectCorrect(ran: Ran[]) {
  for (const r of ran) {
    const want = mlpForward(spec, layers, mlpInput(spec, r.seed))
    expect(Math.max(...r.y.map((v, i) => Math.abs(v - want[i]!)))).toBeLessThan(1e-4)
  }
}

describe('Node peers in a browser swarm', () => {
  let swarm: Swarm
  let ids: string[]
  let nodes: CliContributor[] = []
  const relay = () => swarm.relay.multiaddrs[0]!

  /** `peer-compute submit <args>` from a Node requester with state in `dir`: r=2, q=2, no shortcut, JSON out. */
  const submitCli = (args: string[], dir: string) =>
    runCli([
      'submit',
      ...args,
      '--relay',
      relay(),
      '--dir',
      dir,
      ...['--redundancy', '2', '--quorum', '2'],
      '--no-adaptive',
      '--json',
    ])

  beforeAll(async () => {
    swarm = await startSwarm({ tabs: 3 })
    ids = await Promise.all(swarm.tabs.map(peerId))
    for (const t of swarm.tabs.slice(1)) await t.evaluate(() => window.__peer.setContributing(true))
    nodes = await Promise.all(
      // N1 takes the first EP that works here (CUDA, WebGPU, then CPU); N2 the default, CPU.
      [['--ep', 'auto'], []].map((ep) =>
        startCliContributor({ relay: relay(), args: ['--slots', '2', ...ep] }),
      ),
    )
    await waitForContributors(swarm.tabs[0]!, [...ids.slice(1), ...nodes.map((n) => n.id)])
  })

  // What the Node peers said when a test failed: their side of a stalled job.
  beforeEach(({ onTestFailed }) => {
    onTestFailed(() => {
      for (const n of nodes) console.log(`--- ${n.id}\n${n.output().split('\n').slice(-40).join('\n')}`)
    })
  })

  afterAll(async () => {
    for (const n of nodes) {
      await n.kill()
      await n.remove()
    }
    await swarm?.stop()
  })

  it('verifies across runtimes under tolerance, and exactly within one', async () => {
    const [b, c, n1, n2] = [ids[1]!, ids[2]!, nodes[0]!.id, nodes[1]!.id]
    // Four replicas must agree: every job is computed by both tabs and both Node peers.
    const across = await batch(swarm, [1, 2, 3, 4], { redundancy: 4, quorum: 4, adaptive: false })
    expectCorrect(across)
    for (const r of across) expect(new Set(r.workers)).toEqual(new Set([b, c, n1, n2]))
    // Exact comparison is sound only within a class: each agreeing pair is both tabs or both Node peers.
    const exact = await batch(swarm, [5, 6, 7, 8, 9, 10, 11, 12], {
      redundancy: 2,
      quorum: 2,
      adaptive: false,
      compare: { kind: 'exact' },
    })
    expectCorrect(exact)
    const pairs = exact.map((r) => [...r.workers].sort().join())
    for (const p of pairs) expect([[b, c].sort().join(), [n1, n2].sort().join()]).toContain(p)
    const advert = await swarm.tabs[0]!.evaluate(
      (id) => window.__peer.peers().find((p) => p.id === id)?.advert,
      n1,
    )
    // N1 said which EP it computes on and why it passed over the others; its advert names it.
    const ep = /computing on (\S+)/.exec(nodes[0]!.output())?.[1]
    expect(advert?.eps).toEqual([ep])
    if (ep === 'cpu') expect(nodes[0]!.output()).toMatch(/EP cuda unavailable .*\nEP webgpu unavailable /)
  })

  it('peer-compute map, killed midway and run again: every item once, each record verifies offline', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pc-map-'))
    const served = async () => {
      const tabs = await Promise.all(
        swarm.tabs.slice(1).map((t) => t.evaluate(() => window.__peer.controls.totals().jobs)),
      )
      const node = nodes.map((n) => n.output().match(/job \S+ done/g)?.length ?? 0)
      return [...tabs, ...node].reduce((a, b) => a + b, 0)
    }
    try {
      const items = 30
      await mkdir(join(dir, 'in'))
      for (let i = 0; i < items; i++) {
        const x = { dtype: 'float32' as const, dims: tiny.inputs[0]!.dims, data: mlpInput(spec, 500 + i) }
        await writeFile(join(dir, 'in', `x${String(i).padStart(2, '0')}.npy`), writeNpy(x))
      }
      const args = ['map', 'mlp-tiny', join(dir, 'in'), '--out', join(dir, 'out'), '--relay', relay()]
      const policy = ['--redundancy', '2', '--quorum', '2', '--no-adaptive', '--concurrency', '4']
      const before = await served()
      const first = spawnCli([...args, ...policy, '--dir', join(dir, 'state')])
      // Killed (no chance to tidy up) once about a third is written.
      for (let t = 0; t < 1200 && !/\] (1\d|[2-9]\d)\/30/.test(first.output()); t++)
        await new Promise((r) => setTimeout(r, 25))
      first.child.kill('SIGKILL')
      await first.ended
      const doneFirst = (await readdir(join(dir, 'out'))).length
      expect(doneFirst, first.output()).toBeGreaterThan(0)
      expect(doneFirst).toBeLessThan(items)
      const second = await runCli([...args, ...policy, '--dir', join(dir, 'state')])
      expect(second.code, second.out + second.err).toBe(0)
      expect(second.out).toMatch(new RegExp(`${items} items, (\\d+) already done`))
      const third = await runCli([...args, '--dir', join(dir, 'state')])
      expect(third.out).toMatch(new RegExp(`${items} items, ${items} already done, 0 to run`))
      // Two replicas an item; the jobs in flight at the kill (4 at most) may have run again. A Node
      // peer's log line may reach us a moment after its receipt reached the requester.
      await expect
        .poll(async () => (await served()) - before, { timeout: 5000 })
        .toBeGreaterThanOrEqual(2 * items)
      expect((await served()) - before).toBeLessThanOrEqual(2 * items + 2 * 4)
      const records = (await readdir(join(dir, 'out'))).map((f) => join(dir, 'out', f, 'record.cbor'))
      expect(records).toHaveLength(items)
      const checked = await runCli(['verify', '--quorum', '2', ...records])
      expect(checked.code, checked.err).toBe(0)
      expect(checked.out.match(/valid quorum record/g)).toHaveLength(items)
      for (const [i, f] of records.entries()) {
        const y = readNpy(new Uint8Array(await readFile(join(f, '..', 'y.npy'))))
        const want = mlpForward(spec, layers, mlpInput(spec, 500 + i))
        expect(
          Math.max(...Array.from(y.data as Float32Array, (v, k) => Math.abs(v - want[k]!))),
        ).toBeLessThan(1e-4)
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('a Node contributor killed mid-batch: every job completes', async () => {
    const victim = nodes[1]!
    const served = () => victim.output().match(/job \S+ done/g)?.length ?? 0
    const before = served()
    const running = batch(
      swarm,
      Array.from({ length: 24 }, (_, i) => 100 + i),
      { redundancy: 2, quorum: 2, adaptive: false },
    )
    // Dies once it has served a job of this batch, with others still to come.
    for (let t = 0; t < 600 && served() === before; t++) await new Promise((r) => setTimeout(r, 10))
    await victim.kill()
    expect(served(), 'the victim took part in the batch').toBeGreaterThan(before)
    const ran = await running
    expect(ran).toHaveLength(24)
    expectCorrect(ran)
  })

  it('a Node requester submits to browser contributors; its record and the credit log verify offline', async () => {
    // SIGTERM: it hands back what runs, writes its credit log and exits 0 (N2 was killed above).
    expect(await nodes[0]!.stop()).toBe(0)
    // Its last advert said it stopped contributing: tabs send it nothing more now, though their link
    // to it stays open until ICE gives up (~8 s, a SIGKILL's too).
    const contributing = () =>
      swarm.tabs[1]!.evaluate(
        (id) => window.__peer.peers().find((p) => p.id === id)?.advert.contributing,
        nodes[0]!.id,
      )
    await expect.poll(contributing, { timeout: 1000, interval: 50 }).toBe(false)
    const dir = await mkdtemp(join(tmpdir(), 'pc-submit-'))
    try {
      const out = join(dir, 'out')
      const r = await submitCli(['mlp-tiny', '--random', '--out', out], join(dir, 'state'))
      const outcome = JSON.parse(r.out.trim().split('\n').at(-1)!) as { workers: string[]; risk: number }
      expect(new Set(outcome.workers)).toEqual(new Set(ids.slice(1)))
      // two fresh contributors agreed: the prior squared (src/trust/risk.ts), stated with the result
      expect(outcome.risk).toBeCloseTo(0.01, 6)
      expect((await readdir(out)).sort()).toEqual(['outputs.json', 'receipt.cbor', 'record.cbor', 'y.npy'])
      const receipt = await runCli(['verify', join(out, 'receipt.cbor')])
      expect(receipt.code, receipt.err).toBe(0)
      expect(receipt.out).toMatch(/valid receipt signed by worker 12D3KooW/)
      expect(readNpy(new Uint8Array(await readFile(join(out, 'y.npy')))).dims).toEqual([1, 8])
      const checked = await runCli(['verify', '--quorum', '2', join(out, 'record.cbor')])
      expect(checked.code, checked.err).toBe(0)
      expect(checked.out).toMatch(/valid quorum record: 2 agreeing receipts/)
      // The contributor that served the first test's jobs left its signed credit log behind.
      const log = join(nodes[0]!.dir, 'credit-log.json')
      const credit = await runCli(['verify', log])
      expect(credit.code, credit.err).toBe(0)
      expect(credit.out).toMatch(/valid credit log: [1-9]\d* signed receipts/)
      // A model no catalog lists, from a local file: contributors fetch it from the requester.
      const model = join(dir, 'private.onnx')
      // mlp-tiny-alt with an unknown protobuf field appended (field 1000, varint 1): ORT skips it,
      // but the bytes, and so the CID, are no catalog's.
      const alt = catalog.find((e) => e.name === 'mlp-tiny-alt')!
      const original = await readFile(join(import.meta.dirname, '../../public/models/mlp-tiny-alt.onnx'))
      await writeFile(model, Buffer.concat([original, Buffer.from([0xc0, 0x3e, 0x01])]))
      await writeFile(
        join(dir, 'x.npy'),
        writeNpy({ dtype: 'float32', dims: alt.inputs[0]!.dims, data: new Float32Array(16).fill(0.5) }),
      )
      const local = await submitCli([model, '--input', `x=${join(dir, 'x.npy')}`], join(dir, 'state'))
      expect(local.code, local.err).toBe(0)
      const ran = JSON.parse(local.out.trim().split('\n').at(-1)!) as {
        model: string
        workers: string[]
        outputs: { y: { data: number[] } }
      }
      // What the tabs computed from the requester's copy is that model's output.
      const want = mlpForward(alt.mlp!, mlpWeights(alt.mlp!), new Float32Array(16).fill(0.5))
      expect(Math.max(...ran.outputs.y.data.map((v, i) => Math.abs(v - want[i]!)))).toBeLessThan(1e-4)
      expect(ran.model).toMatch(/^bafk/)
      expect(ran.model).not.toBe(alt.cid)
      expect(new Set(ran.workers)).toEqual(new Set(ids.slice(1)))
      // A flipped byte is caught.
      const bytes = await readFile(join(out, 'record.cbor'))
      bytes[bytes.length - 40]! ^= 1
      await writeFile(join(out, 'bad.cbor'), bytes)
      expect((await runCli(['verify', join(out, 'bad.cbor')])).code).toBe(1)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
