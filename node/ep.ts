/**
 * The onnxruntime-node execution provider a contributor computes with. onnxruntime-node ships CPU
 * kernels; CUDA needs binaries its install script downloads (denied by this package's
 * allowScripts) and WebGPU needs a Vulkan driver. Whether one works is known only once a session
 * is made, so each asked-for EP is tried on a one-node model before the peer joins the swarm.
 */
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import * as ort from 'onnxruntime-node'
import { lenField, stringField, varintField } from '../src/dispute/proto.ts'
import { concat } from '../src/shared/bytes.ts'
import { ExecutionProviderError, InvalidOptionError } from '../src/shared/errors.ts'

export type NodeEp = 'cpu' | 'cuda' | 'webgpu'

/** `--ep auto`: the fastest that works here. */
export const AUTO_EPS: readonly NodeEp[] = ['cuda', 'webgpu', 'cpu']

/** onnxruntime-node's install script where this process finds the package (a global install too). */
function installScript(): string {
  try {
    return join(
      dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json')),
      'script/install.js',
    )
  } catch {
    return 'node_modules/onnxruntime-node/script/install.js'
  }
}

const hint = (ep: NodeEp): string =>
  ep === 'cuda'
    ? 'needs CUDA 12 with cuDNN 9 and the CUDA binaries of onnxruntime-node, which its install ' +
      `script downloads: ONNXRUNTIME_NODE_INSTALL=cuda12 node ${installScript()}`
    : ep === 'webgpu'
      ? 'needs a GPU with a Vulkan driver (libvulkan.so.1)'
      : 'onnxruntime-node could not make a CPU session: reinstall it'

/** `--ep cuda,cpu`: the EPs in order of preference, or a usage error. */
export function parseEps(v: string | undefined): NodeEp[] | undefined {
  if (v === undefined) return undefined
  if (v === 'auto') return [...AUTO_EPS]
  const eps = v.split(',').map((s) => s.trim())
  const bad = eps.find((e) => !(AUTO_EPS as readonly string[]).includes(e))
  if (bad !== undefined || eps.length === 0)
    throw new InvalidOptionError(
      `--ep takes cpu, cuda, webgpu (comma-separated, in order) or auto, got "${v}"`,
    )
  return [...new Set(eps as NodeEp[])]
}

/** y = Relu(x), x and y float32 [1]: the smallest model that makes an EP load its kernels. */
function probeModel(): Uint8Array {
  const tensorType = lenField(1, concat([varintField(1, 1), lenField(2, lenField(1, varintField(1, 1)))]))
  const value = (name: string) => concat([stringField(1, name), lenField(2, tensorType)])
  const node = concat([stringField(1, 'x'), stringField(2, 'y'), stringField(4, 'Relu')])
  const graph = concat([
    lenField(1, node),
    stringField(2, 'probe'),
    lenField(11, value('x')),
    lenField(12, value('y')),
  ])
  return concat([
    varintField(1, 8),
    lenField(7, graph),
    lenField(8, concat([stringField(1, ''), varintField(2, 17)])),
  ])
}

/** Makes a session with `ep` and runs it once; the error's first line if it cannot. */
async function tryEp(ep: NodeEp, model: Uint8Array): Promise<string | undefined> {
  try {
    const s = await ort.InferenceSession.create(model, { executionProviders: [ep], logSeverityLevel: 4 })
    try {
      await s.run({ x: new ort.Tensor('float32', Float32Array.of(-1), [1]) })
    } finally {
      await s.release()
    }
    return undefined
  } catch (err) {
    // ORT's messages start with a source path and a C++ check; what went wrong is the last sentence.
    const m = ((err as Error).message.replace(/\s+/g, ' ').trim().split('. ').at(-1) ?? '').replace(/\.$/, '')
    return m.length > 160 ? `…${m.slice(-160)}` : m
  }
}

/**
 * The first of `wanted` that works on this machine, and why each before it did not; an
 * ExecutionProviderError naming every failure (and what each needs) when none does.
 */
export async function chooseEp(wanted: readonly NodeEp[]): Promise<{ ep: NodeEp; skipped: string[] }> {
  // ORT logs a missing CUDA library itself before it throws: here that is our line to print. Its
  // environment (and so this level) is set up once per process, at its first session; its errors
  // still reach us as exceptions.
  ort.env.logLevel = 'fatal'
  const model = probeModel()
  const skipped: string[] = []
  for (const ep of wanted) {
    const why = await tryEp(ep, model)
    if (why === undefined) return { ep, skipped }
    skipped.push(`${ep} unavailable (${why}): ${hint(ep)}`)
  }
  throw new ExecutionProviderError(skipped.join('; '))
}
