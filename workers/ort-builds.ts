/**
 * The inference worker's two onnxruntime-web builds, each imported on first use: the plain WASM
 * build for 'wasm' sessions, and the JSEP build (WebGPU kernels, Asyncify) only for 'webgpu' ones.
 * Under the JSEP build, 2-thread WASM runs of PP-OCR detection fall to 1-thread speed for good after
 * ~24 runs, as V8 tiers up one of its Asyncify-instrumented functions (DESIGN.md, Compute); under
 * the plain build they do not. Its .wasm is also half the size (14 MB against 28 MB) to fetch and
 * compile. Both .wasm files are served from our own origin, next to the worker.
 */
import type * as Ort from 'onnxruntime-web'
import jsepWasmUrl from 'onnxruntime-web/ort-wasm-simd-threaded.jsep.wasm?url'
import wasmUrl from 'onnxruntime-web/ort-wasm-simd-threaded.wasm?url'
import { InferenceError } from '../src/shared/errors.ts'

export type OrtApi = typeof Ort
export type OrtEp = 'webgpu' | 'wasm'

const builds = new Map<OrtEp, Promise<OrtApi>>()

/** The build for `ep`, configured with `numThreads` (ORT reads it once, when its WASM module starts). */
export function ortFor(ep: OrtEp, numThreads: number): Promise<OrtApi> {
  let build = builds.get(ep)
  if (!build) {
    const load = ep === 'wasm' ? import('onnxruntime-web/wasm') : import('onnxruntime-web')
    build = load.then((ort) => {
      ort.env.wasm.numThreads = numThreads
      // Embedded in another site, this worker runs from a blob of the page's origin (src/compute/spawn-worker.ts)
      // and ORT refuses its bundled module unless told where the .wasm is: next to this file, not the page.
      if (new URL(import.meta.url).origin !== self.location.origin)
        ort.env.wasm.wasmPaths = {
          wasm: new URL(ep === 'wasm' ? wasmUrl : jsepWasmUrl, import.meta.url).href,
        }
      return ort
    })
    builds.set(ep, build)
    // A chunk that failed to load (a network error) is fetched again on the next call.
    build.catch(() => builds.get(ep) === build && builds.delete(ep))
  }
  return build.catch((err: Error) => {
    throw new InferenceError(`onnxruntime-web ${ep} build failed to load: ${err.message}`)
  })
}
