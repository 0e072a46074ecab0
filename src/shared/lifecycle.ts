/**
 * One lifecycle for the services a composition root wires (src/peer.ts): registered in order,
 * started in that order, stopped in reverse, so a service stops before the ones it runs on.
 *
 * @example
 * const life = createLifecycle(log)
 * const store = life.add('store', await openStore())
 * life.add('writes', { start: () => listen(), stop: () => store.flush() })
 * await life.start() // on failure: await life.stop(), then rethrow
 * await life.stop() // writes, then store
 */

/**
 * libp2p's `Startable` less its optional hooks, with `start` only where there is start-up work: a
 * service built by a factory runs from construction, and stopping it must not wait for a start.
 */
export interface Service {
  start?(): void | Promise<void>
  stop(): void | Promise<void>
}

export interface Lifecycle {
  /** Registers `service` after those already registered: started after them, stopped before them. */
  add<S extends Service>(name: string, service: S): S
  /** Starts the registered services in order, each awaited; the first failure rejects. */
  start(): Promise<void>
  /**
   * Stops every registered service, started or not, last registered first, each awaited. A failure
   * is logged and stops nothing else from stopping; once all are stopped, stop() rejects with the
   * failure (an AggregateError if several). Only the first call stops: later ones get its promise.
   */
  stop(): Promise<void>
}

export interface LifecycleLog {
  error(format: string, ...args: unknown[]): void
}

export function createLifecycle(log?: LifecycleLog): Lifecycle {
  const services: { name: string; service: Service }[] = []
  let stopping: Promise<void> | undefined

  async function stopAll(): Promise<void> {
    const failed: { name: string; err: unknown }[] = []
    for (const { name, service } of [...services].reverse()) {
      try {
        await service.stop()
      } catch (err) {
        log?.error('%s did not stop cleanly: %s', name, err)
        failed.push({ name, err })
      }
    }
    if (failed.length === 1) throw failed[0]!.err
    if (failed.length > 1) {
      const names = failed.map((f) => f.name).join(', ')
      throw new AggregateError(
        failed.map((f) => f.err),
        `${failed.length} services did not stop cleanly: ${names}`,
      )
    }
  }

  return {
    add(name, service) {
      services.push({ name, service })
      return service
    },
    async start() {
      for (const { service } of services) await service.start?.()
    },
    stop() {
      stopping ??= stopAll()
      return stopping
    },
  }
}
