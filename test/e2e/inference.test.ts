/**
 * The inference worker in real Chromium: WASM (threaded) and SwiftShader WebGPU agree with the JS reference,
 * integrity and unknown-model errors keep their names across comlink, 'auto' avoids fallback adapters,
 * and cancelling a queued run rejects with AbortError.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type MlpSpec, mlpForward, mlpInput, mlpWeights } from '../../src/shared/mlp.ts'
import { launchBrowser, type TestBrowser } from '../helpers/chromium.ts'
import { type DevServer, startViteServer } from '../helpers/vite-server.ts'

interface Entry {
  name: string
  cid: string
  file: string
  mlp: MlpSpec
}
const catalog: Entry[] = JSON.parse(
  readFileSync(resolve(import.meta.dirname, '../../public/models/catalog.json'), 'utf8'),
)
const tiny = catalog.find((e) => e.name === 'mlp-tiny')!
const other = catalog.find((e) => e.name !== 'mlp-tiny')!
const x = Array.from(mlpInput(tiny.mlp))
const expected = Array.from(mlpForward(tiny.mlp, mlpWeights(tiny.mlp), mlpInput(tiny.mlp)))
const dims = [tiny.mlp.batch, tiny.mlp.layers[0]!]

type Outcome = { ok: true; y: number[]; ep: string } | { ok: false; name: string; message: string }

/** Loads `file` under `cid` and runs it on `ep` through window.__inference; errors come back by name. */
function runInPage(
  page: Page,
  arg: { cid: string; file: string; ep: string; load?: boolean },
): Promise<Outcome> {
  return page.evaluate(
    async ({ cid, file, ep, load, x, dims }) => {
      try {
        if (load !== false) {
          const bytes = new Uint8Array(await (await fetch(`/${file}`)).arrayBuffer())
          await window.__inference.loadModel(cid, bytes)
        }
        const res = await window.__inference.run({
          cid,
          ep: ep as 'wasm' | 'webgpu' | 'auto',
          inputs: { x: { dtype: 'float32', dims, data: Float32Array.from(x) } },
        })
        return { ok: true as const, y: Array.from(res.outputs.y!.data as Float32Array), ep: res.ep }
      } catch (err) {
        return { ok: false as const, name: (err as Error).name, message: (err as Error).message }
      }
    },
    { ...arg, x, dims },
  )
}

function expectClose(actual: number[], reference: number[], tol = 1e-4): void {
  expect(actual).toHaveLength(reference.length)
  const maxDiff = Math.max(...actual.map((v, i) => Math.abs(v - reference[i]!)))
  expect(maxDiff).toBeLessThan(tol)
}

describe('inference worker in Chromium', () => {
  let server: DevServer
  let browser: TestBrowser
  let page: Page
  const logs: string[] = []

  beforeAll(async () => {
    server = await startViteServer()
    browser = await launchBrowser({ webgpu: true })
    page = await browser.newPage()
    page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`))
    page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`))
    page.on('response', (r) => r.status() >= 400 && logs.push(`[http ${r.status()}] ${r.url()}`))
    await page.goto(`${server.url}/test/pages/inference.html`)
    await page.waitForSelector('body[data-ready="true"]')
  })

  afterAll(async () => {
    await page?.evaluate(() => window.__inference.close()).catch(() => {})
    await browser?.close()
    await server?.close()
    if (logs.some((l) => l.startsWith('[error]') || l.startsWith('[pageerror]'))) console.log(logs.join('\n'))
  })

  it('is cross-origin isolated, threaded, and sees the SwiftShader fallback adapter', async () => {
    const caps = await page.evaluate(() => window.__inference.capabilities())
    expect(caps.crossOriginIsolated).toBe(true)
    expect(caps.threads).toBeGreaterThan(1)
    expect(caps.eps).toEqual(['webgpu', 'wasm'])
    expect(caps.adapter?.isFallback).toBe(true)
    expect(caps.ortVersion).toMatch(/^1\.30/)
  })

  it('WASM and WebGPU agree with each other and with the JS reference', async () => {
    const wasm = await runInPage(page, { cid: tiny.cid, file: tiny.file, ep: 'wasm' })
    const gpu = await runInPage(page, { cid: tiny.cid, file: tiny.file, ep: 'webgpu', load: false })
    if (!wasm.ok || !gpu.ok)
      throw new Error(`run failed: ${JSON.stringify({ wasm, gpu })}\n${logs.join('\n')}`)
    expect(wasm.ep).toBe('wasm')
    expect(gpu.ep).toBe('webgpu')
    expectClose(wasm.y, expected)
    expectClose(gpu.y, expected)
    expectClose(gpu.y, wasm.y)
  })

  it("'auto' picks WASM on a fallback adapter", async () => {
    const auto = await runInPage(page, { cid: tiny.cid, file: tiny.file, ep: 'auto', load: false })
    expect(auto).toMatchObject({ ok: true, ep: 'wasm' })
  })

  it('rejects bytes that do not hash to the cid with ModelIntegrityError', async () => {
    const res = await runInPage(page, { cid: other.cid, file: tiny.file, ep: 'wasm' })
    expect(res).toMatchObject({ ok: false, name: 'ModelIntegrityError' })
  })

  it('rejects a run on an unknown cid with UnknownModelError', async () => {
    const res = await runInPage(page, { cid: other.cid, file: tiny.file, ep: 'wasm', load: false })
    expect(res).toMatchObject({ ok: false, name: 'UnknownModelError' })
  })

  it('cancelling a queued run in the worker rejects it with AbortError; the queue keeps going', async () => {
    const res = await page.evaluate(
      async ({ cid, file, x, dims }) => {
        const worker = window.__openRawWorker()
        const bytes = new Uint8Array(await (await fetch(`/${file}`)).arrayBuffer())
        await worker.loadModel(cid, bytes)
        const inputs = { x: { dtype: 'float32' as const, dims, data: Float32Array.from(x) } }
        const settle = (p: Promise<unknown>) =>
          p.then(
            () => 'ok',
            (e: Error) => e.name,
          )
        // The first run creates the session (hundreds of ms), so the second is still queued when cancelled.
        const first = settle(worker.run({ runId: 'a', cid, inputs, ep: 'wasm' }))
        const second = settle(worker.run({ runId: 'b', cid, inputs, ep: 'wasm' }))
        const cancelled = await worker.cancel('b')
        const result = { cancelled, first: await first, second: await second }
        const third = await settle(worker.run({ runId: 'c', cid, inputs, ep: 'wasm' }))
        return { ...result, third }
      },
      { cid: tiny.cid, file: tiny.file, x, dims },
    )
    expect(res).toEqual({ cancelled: true, first: 'ok', second: 'AbortError', third: 'ok' })
  })

  it('aborting a bridge run rejects with AbortError and leaves the bridge usable', async () => {
    const res = await page.evaluate(
      async ({ cid, x, dims }) => {
        const inputs = { x: { dtype: 'float32' as const, dims, data: Float32Array.from(x) } }
        const ac = new AbortController()
        const pending = window.__inference.run({ cid, inputs, ep: 'wasm' }, ac.signal)
        ac.abort()
        const aborted = await pending.then(
          () => 'ok',
          (e: Error) => e.name,
        )
        const after = await window.__inference.run({ cid, inputs, ep: 'wasm' })
        return { aborted, afterEp: after.ep }
      },
      { cid: tiny.cid, x, dims },
    )
    expect(res).toEqual({ aborted: 'AbortError', afterEp: 'wasm' })
  })
  it('rejects inputs that do not match the model with InvalidTensorError', async () => {
    const name = await page.evaluate(
      async ({ cid, x, dims }) =>
        window.__inference
          .run({ cid, ep: 'wasm', inputs: { wrong: { dtype: 'float32', dims, data: Float32Array.from(x) } } })
          .then(
            () => 'ok',
            (e: Error) => e.name,
          ),
      { cid: tiny.cid, x, dims },
    )
    expect(name).toBe('InvalidTensorError')
  })

  it('restarts an idle-terminated worker and re-sends its models', async () => {
    const res = await page.evaluate(
      async ({ cid, file, x, dims }) => {
        const bridge = window.__createInferenceBridge({ idleTimeoutMs: 200 })
        const bytes = new Uint8Array(await (await fetch(`/${file}`)).arrayBuffer())
        await bridge.loadModel(cid, bytes)
        const inputs = { x: { dtype: 'float32' as const, dims, data: Float32Array.from(x) } }
        await bridge.run({ cid, inputs, ep: 'wasm' })
        const cached = await bridge.run({ cid, inputs, ep: 'wasm' })
        await new Promise((r) => setTimeout(r, 600))
        const restarted = await bridge.run({ cid, inputs, ep: 'wasm' })
        bridge.close()
        const closed = await bridge.capabilities().then(
          () => 'ok',
          (e: Error) => e.name,
        )
        return { cachedMs: cached.timing.sessionMs, restartedMs: restarted.timing.sessionMs, closed }
      },
      { cid: tiny.cid, file: tiny.file, x, dims },
    )
    // A fresh worker has to start ORT and create the session again; a cached session costs ~nothing.
    expect(res.restartedMs).toBeGreaterThan(res.cachedMs)
    expect(res.closed).toBe('InferenceError')
  })
})
