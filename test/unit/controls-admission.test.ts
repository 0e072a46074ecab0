/**
 * Contributor controls without a browser: pausing refuses new jobs at once and hands running ones back
 * (JobHandedBackError → reject 'cancelled'), pressure caps slots, settings are clamped, and the iframe
 * embed's message check refuses anything malformed.
 */
import { describe, expect, it } from 'vitest'
import { createAdmission } from '../../src/compute/admission.ts'
import type { InferenceEngine, RunResult } from '../../src/compute/bridge.ts'
import { DEFAULT_SETTINGS, normalizeSettings } from '../../src/compute/settings.ts'
import { createSwitchableEngine } from '../../src/compute/switchable-engine.ts'
import { AbortError } from '../../src/shared/errors.ts'
import { checkHostMessage, parseAllowList } from '../../src/widget/messages.ts'

/** An engine whose runs wait until released or aborted. */
function slowEngine(): InferenceEngine & { finish(): void } {
  let finish = () => {}
  return {
    finish: () => finish(),
    capabilities: async () => ({
      eps: ['wasm'],
      adapter: null,
      threads: 1,
      crossOriginIsolated: false,
      ortVersion: 'x',
    }),
    loadModel: async () => {},
    run: (_p, signal) =>
      new Promise<RunResult>((resolve, reject) => {
        finish = () => resolve({ outputs: {}, ep: 'wasm', timing: { sessionMs: 0, runMs: 1 } })
        signal?.addEventListener('abort', () => reject(new AbortError('aborted')), { once: true })
      }),
    evict: async () => false,
    close: () => {},
  }
}

describe('admission', () => {
  it('pausing refuses new jobs immediately and resuming admits them again', () => {
    const a = createAdmission({ maxSlots: 2, contributing: true })
    const release = a.tryAcquire()
    expect(typeof release).toBe('function')
    a.setHold('paused', true)
    expect(a.tryAcquire()).toBe('not-contributing')
    expect(a.why('not-contributing')).toMatch(/paused: the contributor paused/)
    expect(a.free).toBe(0)
    expect(a.active).toBe(false)
    a.setHold('paused', false)
    expect(typeof a.tryAcquire()).toBe('function')
  })

  it('hands running jobs back on any new hold, and gives new jobs a fresh signal', () => {
    const a = createAdmission({ maxSlots: 2, contributing: true })
    const running = a.handBack
    a.setHold('hidden', true)
    expect(running.aborted).toBe(true)
    expect((running.reason as Error).message).toMatch(/hidden/)
    expect(a.handBack.aborted).toBe(false)
    a.setHold('hidden', false)
    a.setContributing(false)
    expect(a.why('not-contributing')).toMatch(/switched off/)
  })

  it('caps slots under CPU pressure', () => {
    const a = createAdmission({ maxSlots: 3, contributing: true })
    a.setSlotCap(1)
    expect(typeof a.tryAcquire()).toBe('function')
    expect(a.tryAcquire()).toBe('busy')
    expect(a.why('busy')).toMatch(/pressure/)
    a.setSlotCap(undefined)
    expect(typeof a.tryAcquire()).toBe('function')
  })
})

describe('guarded engine', () => {
  const make = (inner: InferenceEngine, max = 1000) => {
    const a = createAdmission({ maxSlots: 2, contributing: true })
    const engine = createSwitchableEngine({
      make: () => inner,
      fixed: true,
      init: {},
    })
    return { a, jobs: engine.guarded({ handBack: () => a.handBack, maxModelBytes: () => max }) }
  }

  it('turns a pause during a run into JobHandedBackError with the reason', async () => {
    const inner = slowEngine()
    const { a, jobs } = make(inner)
    const run = jobs.run({ cid: 'm', inputs: {} })
    await new Promise((r) => setTimeout(r, 5))
    a.setHold('paused', true)
    await expect(run).rejects.toMatchObject({
      name: 'JobHandedBackError',
      message: expect.stringMatching(/paused.*handed back/),
    })
  })

  it('lets a run finish when nothing is held, and refuses a model over the size limit', async () => {
    const inner = slowEngine()
    const { jobs } = make(inner, 10)
    const run = jobs.run({ cid: 'm', inputs: {} })
    await new Promise((r) => setTimeout(r, 5))
    inner.finish()
    await expect(run).resolves.toMatchObject({ ep: 'wasm' })
    await expect(jobs.loadModel('m', new Uint8Array(11))).rejects.toMatchObject({
      name: 'ModelTooLargeError',
    })
  })
})

describe('settings', () => {
  it('clamps and fills in anything stored or typed', () => {
    expect(normalizeSettings(undefined)).toEqual(DEFAULT_SETTINGS)
    const s = normalizeSettings({ maxJobs: 99, wasmThreads: -3, runWhen: 'sometimes', allowWebGpu: 'yes' })
    expect(s).toMatchObject({ maxJobs: 16, wasmThreads: 0, runWhen: 'always', allowWebGpu: true })
    expect(normalizeSettings({ runWhen: 'visible' }, s).maxJobs).toBe(16)
  })
})

describe('embed messages', () => {
  const msg = (extra: Record<string, unknown>) => ({ type: 'peer-compute', v: 1, id: 'a1', ...extra })
  const x = { dtype: 'float32', dims: [1, 4], data: new Float32Array(4) }

  it('accepts well-formed requests', () => {
    expect(checkHostMessage(msg({ method: 'status' }))).toMatchObject({ ok: true })
    const r = checkHostMessage(
      msg({
        method: 'submit',
        params: { model: 'mlp-tiny', inputs: { x }, options: { peer: 'p', persist: false } },
      }),
    )
    expect(r.ok && r.value.method === 'submit' && r.value.params.options).toEqual({
      peer: 'p',
      persist: false,
    })
    const fromArray = checkHostMessage(
      msg({ method: 'submit', params: { model: 'm', inputs: { x: { ...x, data: [1, 2, 3, 4] } } } }),
    )
    expect(
      fromArray.ok && fromArray.value.method === 'submit' && fromArray.value.params.inputs.x!.data,
    ).toBeInstanceOf(Float32Array)
  })

  it('refuses malformed ones with a reason', () => {
    const bad = [
      'hello',
      null,
      { type: 'other' },
      msg({ method: 'steal-keys' }),
      msg({ method: 'status', extra: 1 }),
      msg({ method: 'status', id: '' }),
      msg({ method: 'submit', params: { model: 'm', inputs: { x: { ...x, dims: [2, 4] } } } }),
      msg({ method: 'submit', params: { model: 'm', inputs: { x: { ...x, dtype: 'float64' } } } }),
      msg({ method: 'submit', params: { model: 'm', inputs: { x: { ...x, data: new Int32Array(4) } } } }),
      msg({ method: 'submit', params: { model: 'm', inputs: {} } }),
      msg({ method: 'submit', params: { model: 'm', inputs: { x }, options: { persist: 'no' } } }),
    ]
    for (const m of bad) {
      const r = checkHostMessage(m)
      expect(r.ok, JSON.stringify(m)).toBe(false)
      if (!r.ok) expect(r.why.length).toBeGreaterThan(3)
    }
  })

  it('allow-lists exact origins only', () => {
    expect(
      parseAllowList([
        'https://a.example',
        'http://localhost:8081/',
        '*',
        'https://a.example/path',
        'javascript:x',
      ]),
    ).toEqual(['https://a.example', 'http://localhost:8081'])
  })
})
