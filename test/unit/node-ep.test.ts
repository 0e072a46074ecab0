/**
 * `contribute --ep` (node/ep.ts): the flag, and which EPs work on this machine, found by making a
 * real onnxruntime-node session with each. CI has no GPU: there CUDA and WebGPU are unavailable and
 * CPU is chosen; on a machine with them the same checks hold for the EP that works.
 */
import { describe, expect, it } from 'vitest'
import { chooseEp, parseEps } from '../../node/ep.ts'
import { runCli } from '../helpers/cli.ts'

const RELAY = '/ip4/127.0.0.1/tcp/9/ws/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'
const cuda = await chooseEp(['cuda']).then(
  () => true,
  () => false,
)

describe('contribute --ep', () => {
  it('takes a list in order of preference, or auto', () => {
    expect(parseEps(undefined)).toBeUndefined()
    expect(parseEps('cuda,cpu')).toEqual(['cuda', 'cpu'])
    expect(parseEps('auto')).toEqual(['cuda', 'webgpu', 'cpu'])
    expect(parseEps('cpu,cpu')).toEqual(['cpu'])
    for (const bad of ['gpu', '', 'cuda,', 'CPU']) expect(() => parseEps(bad), bad).toThrow(/--ep takes/)
  })

  it('uses the first EP that runs a model here, saying why it passed over the others', async () => {
    const { ep, skipped } = await chooseEp(['cuda', 'cpu'])
    if (cuda) {
      expect(ep).toBe('cuda')
      expect(skipped).toEqual([])
    } else {
      expect(ep).toBe('cpu')
      expect(skipped).toHaveLength(1)
      expect(skipped[0]).toMatch(/^cuda unavailable \(.+\): needs CUDA 12 .*ONNXRUNTIME_NODE_INSTALL=cuda12/)
    }
    expect(await chooseEp(['cpu'])).toEqual({ ep: 'cpu', skipped: [] })
  })

  it.runIf(!cuda)(
    'without CUDA here, --ep cuda stops before joining: one named line, a hint, exit 2',
    async () => {
      const r = await runCli(['contribute', '--relay', RELAY, '--ep', 'cuda'])
      expect(r.code).toBe(2)
      expect(r.err).toMatch(
        /^peer-compute contribute: ExecutionProviderError: cuda unavailable .*onnxruntime-node\/script\/install\.js\n {2}pass --ep auto to take the first EP/,
      )
      expect(r.out).not.toMatch(/contributing as/)
    },
  )
})
