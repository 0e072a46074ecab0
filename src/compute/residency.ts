/**
 * The one record of which models the inference workers hold, and where their bytes come from. The
 * bridges built on it (bridge.ts) send a model to their worker on demand, again after a restart, so
 * the layers above (the auto pool, the switch, the guarded view) keep no list of their own; dropping
 * a model reaches every bridge attached, whichever engine or thread count it belongs to.
 *
 * @example
 * const residency = createResidency({ source: (cid) => store.get(cid) })
 * const a = createInferenceBridge({ residency, init: { numThreads: 1 } })
 * const b = createInferenceBridge({ residency, init: { numThreads: 4 } })
 * await a.loadModel(cid, bytes) // b's worker gets it on its first run of cid
 * await residency.drop(cid) // both workers forget it
 */

export interface ResidentModel {
  /** The model's size: what the guarded view checks against the contributor's limit. */
  bytes: number
}

/** A bridge's hook for `drop`: removes the model from its worker; whether the worker had it. */
export type Holder = (cid: string, signal?: AbortSignal) => Promise<boolean>

export interface Residency {
  /** Records a model a worker verified: every attached bridge may now send it to its worker. */
  add(cid: string, bytes: Uint8Array): void
  resident(cid: string): ResidentModel | undefined
  /** The bytes for a worker that lacks `cid`: kept ones or the source's; undefined if not resident. */
  bytes(cid: string, signal?: AbortSignal): Promise<Uint8Array | undefined>
  /** Forgets `cid` and removes it from every attached bridge's worker; whether anything held it. */
  drop(cid: string, signal?: AbortSignal): Promise<boolean>
  /** Attaches a bridge (until the returned detach): `drop` reaches its worker. */
  attach(holder: Holder): () => void
  /** Counts the drops of `cid`: a load that sees it change while under way must not add the model back. */
  generation(cid: string): number
}

export interface ResidencyOptions {
  /**
   * Where a fresh worker gets a model's bytes (e.g. the model store). Without it the residency keeps
   * a reference to every model's bytes so it can re-send them.
   */
  source?: (cid: string, signal?: AbortSignal) => Promise<Uint8Array | undefined>
}

export function createResidency(o: ResidencyOptions = {}): Residency {
  const models = new Map<string, ResidentModel>()
  const kept = new Map<string, Uint8Array>()
  const holders = new Set<Holder>()
  const drops = new Map<string, number>()

  return {
    add(cid, bytes) {
      models.set(cid, { bytes: bytes.byteLength })
      if (!o.source) kept.set(cid, bytes)
    },
    resident: (cid) => models.get(cid),
    async bytes(cid, signal) {
      if (!models.has(cid)) return undefined
      return kept.get(cid) ?? (await o.source?.(cid, signal))
    },
    async drop(cid, signal) {
      drops.set(cid, (drops.get(cid) ?? 0) + 1)
      const had = models.delete(cid)
      kept.delete(cid)
      // Every worker is asked, even one whose drop fails first: none may keep serving it.
      const done = await Promise.allSettled([...holders].map((h) => h(cid, signal)))
      const failed = done.find((d): d is PromiseRejectedResult => d.status === 'rejected')
      if (failed) throw failed.reason
      return done.some((d) => d.status === 'fulfilled' && d.value) || had
    },
    generation: (cid) => drops.get(cid) ?? 0,
    attach(holder) {
      holders.add(holder)
      return () => void holders.delete(holder)
    },
  }
}
