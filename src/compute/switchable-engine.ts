/**
 * The engine the Peer uses: the worker bridge behind a switch, so contributor settings (threads,
 * WebGPU) restart the worker, a lazy engine starts no worker until it is needed, and jobs served to
 * others go through a guarded view that hands them back on pause and enforces the model size limit.
 * Both are thin decorators: `make` builds engines on one residency (compute-service.ts), so a fresh
 * engine serves the models loaded before the switch, and neither keeps a list of models.
 */
import { AbortError, JobHandedBackError, ModelTooLargeError } from '../shared/errors.ts'
import type { InferenceEngine, InitOptions } from './bridge.ts'

export interface SwitchableEngine extends InferenceEngine {
  /** New init options: later calls go to a fresh worker; the old one closes once idle. */
  configure(init: InitOptions): void
  /** Lets a lazy engine start. `capabilities()` waits for it; loading or running a model activates it. */
  activate(): void
  readonly active: boolean
  /** A view for served jobs: aborted with JobHandedBackError when `handBack` fires; size-limited models. */
  guarded(g: { handBack(): AbortSignal; maxModelBytes(): number }): InferenceEngine
  /** 'change' after configure(): capabilities may differ. */
  events: EventTarget
}

export interface SwitchableEngineOptions {
  /** Builds the engine for `init`: on the residency of the ones before it, so models carry over. */
  make(init: InitOptions): InferenceEngine
  /** `make` returns a caller's engine: configure() does not replace it. */
  fixed?: boolean
  init: InitOptions
  lazy?: boolean
}

interface Slot {
  engine: InferenceEngine
  calls: number
  retired: boolean
}

/** The switch's mutable state: the init its next engine gets, the current engine, and whether closed. */
interface Switch {
  o: SwitchableEngineOptions
  init: InitOptions
  slot: Slot | undefined
  closed: boolean
}

export function createSwitchableEngine(o: SwitchableEngineOptions): SwitchableEngine {
  const events = new EventTarget()
  const sw: Switch = { o, init: o.init, slot: undefined, closed: false }
  let active = !o.lazy
  let activated: () => void = () => {}
  const ready = new Promise<void>((resolve) => {
    activated = resolve
  })
  if (active) activated()

  const activate = () => {
    active = true
    activated()
  }

  const engine: SwitchableEngine = {
    events,
    get active() {
      return active
    },
    activate,
    configure(next) {
      const { init } = sw
      if (o.fixed || (next.numThreads === init.numThreads && next.allowWebGpu === init.allowWebGpu)) return
      sw.init = next
      if (sw.slot) retire(sw.slot)
      sw.slot = undefined
      events.dispatchEvent(new Event('change'))
    },
    capabilities: async (signal) => {
      await ready
      return use(sw, (s) => s.engine.capabilities(signal))
    },
    /** Its runtime (and sessions a stopped worker held) start before the next job rather than during it. */
    warm: (signal) => use(sw, async (s) => s.engine.warm?.(signal)),
    loadModel: (cid, bytes, signal) => {
      activate()
      return use(sw, (s) => s.engine.loadModel(cid, bytes, signal))
    },
    run: (params, signal) => {
      activate()
      return use(sw, (s) => s.engine.run(params, signal))
    },
    /** Through the current engine's residency, which every engine shares: retired ones' workers too. */
    evict: (cid, signal) => use(sw, (s) => s.engine.evict(cid, signal)),
    resident: (cid) => (sw.closed ? undefined : current(sw).engine.resident?.(cid)),
    close() {
      sw.closed = true
      if (sw.slot) retire(sw.slot)
      sw.slot = undefined
    },
    guarded: (g) => guardedView(engine, g),
  }
  return engine
}

function current(sw: Switch): Slot {
  // After close, nothing may build a fresh engine (a late call would start a worker nobody stops).
  if (sw.closed) throw new AbortError('the engine is closed')
  sw.slot ??= { engine: sw.o.make(sw.init), calls: 0, retired: false }
  return sw.slot
}

function retire(s: Slot): void {
  s.retired = true
  if (s.calls === 0) s.engine.close()
}

async function use<T>(sw: Switch, fn: (s: Slot) => Promise<T>): Promise<T> {
  const s = current(sw)
  s.calls++
  try {
    return await fn(s)
  } finally {
    s.calls--
    if (s.retired && s.calls === 0) s.engine.close()
  }
}

/** SwitchableEngine.guarded: hands served jobs back when `handBack` fires, and refuses oversized models. */
function guardedView(
  engine: SwitchableEngine,
  g: { handBack(): AbortSignal; maxModelBytes(): number },
): InferenceEngine {
  const guard = async <T>(signal: AbortSignal | undefined, fn: (sig: AbortSignal) => Promise<T>) => {
    const handBack = g.handBack()
    if (handBack.aborted) throw handedBack(handBack)
    try {
      return await fn(AbortSignal.any([handBack, ...(signal ? [signal] : [])]))
    } catch (err) {
      if (handBack.aborted && (err as Error).name === AbortError.NAME) throw handedBack(handBack)
      throw err
    }
  }
  return {
    ...engine,
    capabilities: (signal) => engine.capabilities(signal),
    /** Only a model within the limit counts as loaded here: a larger one must go through loadModel. */
    resident: (cid) => {
      const r = engine.resident?.(cid)
      return r && r.bytes <= g.maxModelBytes() ? r : undefined
    },
    loadModel: async (cid, bytes, signal) => {
      const max = g.maxModelBytes()
      if (bytes.byteLength > max) {
        const mb = (n: number) => (n < 2 ** 20 ? `${n} bytes` : `${(n / 2 ** 20).toFixed(1)} MiB`)
        throw new ModelTooLargeError(
          `model ${cid} is ${mb(bytes.byteLength)}, over this contributor's ${mb(max)} limit`,
        )
      }
      return guard(signal, (sig) => engine.loadModel(cid, bytes, sig))
    },
    run: (params, signal) => guard(signal, (sig) => engine.run(params, sig)),
    close: () => {}, // the Peer closes the engine itself
  }
}

function handedBack(signal: AbortSignal): Error {
  const why = signal.reason instanceof Error ? signal.reason.message : 'the contributor paused'
  return new JobHandedBackError(`${why}: job handed back, reissue it elsewhere`)
}
