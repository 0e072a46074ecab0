/**
 * The typed event maps: listeners get the event's detail type without a cast, and a wrong event name
 * or detail field fails `npm run typecheck` (tsconfig.test.json). The runtime part shows the controls
 * still dispatch plain Events and CustomEvents carrying the same detail objects.
 */
import { describe, expect, expectTypeOf, it } from 'vitest'
import type { InferenceEngine } from '../../src/compute/bridge.ts'
import { createControls } from '../../src/compute/controls.ts'
import type {
  ControlsEvents,
  CreditsEvents,
  JobDone,
  ModelHubEvents,
  ModelProgress,
  Peer,
  PeerEvents,
  RunningJob,
} from '../../src/index.ts'

/** Never called: tsc checks these lines, vitest only loads them. */
function listeners(peer: Peer): void {
  peer.controls.events.addEventListener('job-done', (e) => {
    expectTypeOf(e.detail.ok).toEqualTypeOf<boolean>()
    expectTypeOf(e.detail).toEqualTypeOf<JobDone>()
    // @ts-expect-error JobDone has no `result`
    void e.detail.result
  })
  peer.controls.events.addEventListener('job-started', (e) =>
    expectTypeOf(e.detail).toEqualTypeOf<RunningJob>(),
  )
  peer.models.events.addEventListener('progress', (e) =>
    expectTypeOf(e.detail).toEqualTypeOf<ModelProgress>(),
  )
  peer.events.addEventListener('peers', (e) => {
    expectTypeOf(e).toEqualTypeOf<Event>()
    // @ts-expect-error 'peers' is a plain Event, without a detail
    void e.detail
  })
  peer.credits.events.addEventListener('change', () => {})
  // @ts-expect-error not an event of the controls
  peer.controls.events.addEventListener('job-finished', () => {})
  // @ts-expect-error not an event of the peer ('job-done' belongs to the controls)
  peer.events.addEventListener('job-done', () => {})
  // @ts-expect-error a listener for another event's detail
  peer.models.events.addEventListener('progress', (e: CustomEvent<JobDone>) => void e.detail.ok)
}

describe('typed events', () => {
  it('names each event of the maps', () => {
    expectTypeOf(listeners).toBeFunction()
    expectTypeOf<keyof PeerEvents>().toEqualTypeOf<'status' | 'peers' | 'jobs' | 'serving'>()
    expectTypeOf<keyof ControlsEvents>().toEqualTypeOf<
      'change' | 'totals' | 'job-started' | 'job-done' | 'engine'
    >()
    expectTypeOf<keyof ModelHubEvents>().toEqualTypeOf<'change' | 'progress'>()
    expectTypeOf<keyof CreditsEvents>().toEqualTypeOf<'change'>()
  })

  it('dispatches the same events and detail objects as before', async () => {
    const engine: InferenceEngine = {
      capabilities: async () => ({
        eps: ['wasm'],
        adapter: null,
        threads: 1,
        crossOriginIsolated: false,
        ortVersion: 'x',
      }),
      loadModel: async () => {},
      run: async () => ({ outputs: {}, ep: 'wasm', timing: { sessionMs: 0, runMs: 1 } }),
      evict: async () => false,
      close: () => {},
    }
    const controls = await createControls({
      store: { getSetting: async () => undefined, putSetting: async () => {} },
      storeName: 'events-types',
      selfId: 'self',
      modelSource: async () => new Uint8Array(),
      engine,
    })
    const seen: [string, string, unknown][] = []
    const record = (e: Event) =>
      seen.push([e.type, e.constructor.name, e instanceof CustomEvent ? e.detail : undefined])
    for (const t of ['totals', 'job-started', 'job-done'] as const)
      controls.events.addEventListener(t, record)
    const job: RunningJob = { job: 'j1', model: 'm', requester: 'r', startedAt: 1 }
    controls.jobStarted(job)
    controls.jobEnded(job, { ok: true, runMs: 2 })
    controls.stop()
    expect(controls.events).toBeInstanceOf(EventTarget)
    expect(seen).toEqual([
      ['job-started', 'CustomEvent', job],
      ['totals', 'Event', undefined],
      ['job-done', 'CustomEvent', { ...job, ok: true, runMs: 2 }],
    ])
    expect(seen[0]?.[2]).toBe(job)
  })
})
