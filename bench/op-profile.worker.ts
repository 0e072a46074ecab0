/**
 * Bench worker: one model on onnxruntime-web's plain WASM build (1 thread) with ORT's profiler on. ORT prints the
 * profile through a console.log it bound when its module loaded, so console.log is replaced first
 * and onnxruntime-web imported after that.
 */
import { expose } from 'comlink'
import { eventsFromText, type OpProfile, opProfile } from './op-profile.ts'

const printed: string[] = []
console.log = (...a: unknown[]) => void printed.push(a.map(String).join(' '))
const ortLoaded = import('onnxruntime-web/wasm') // the build the app runs WASM sessions on

async function profile(
  bytes: Uint8Array,
  feeds: Record<string, { data: Float32Array; dims: number[] }>,
  runs: number,
): Promise<OpProfile> {
  const ort = await ortLoaded
  ort.env.wasm.numThreads = 1
  const session = await ort.InferenceSession.create(bytes, {
    executionProviders: ['wasm'],
    graphOptimizationLevel: 'all',
    enableProfiling: true,
  })
  const input = Object.fromEntries(
    Object.entries(feeds).map(([k, t]) => [k, new ort.Tensor('float32', t.data, t.dims)]),
  )
  for (let i = 0; i <= runs; i++) await session.run(input)
  printed.length = 0
  session.endProfiling()
  await session.release()
  return opProfile(eventsFromText(printed.join('\n')))
}

const api = { profile }
export type OpProfileApi = typeof api
expose(api)
