/** What every part of the file store shares: its folder, and one queue of operations per area. */
import { join } from 'node:path'

/**
 * Operations on one area run one at a time, in call order, as IndexedDB runs transactions over
 * the same stores: a read sees every write called before it. Areas do not wait for each other.
 */
export type Area = 'jobs' | 'models' | 'settings' | 'identity' | 'credits' | 'reputation'

export interface Ctx {
  path(...parts: string[]): string
  /** Runs `fn` after the area's earlier operations; rejects at once (InvalidStateError) once closed. */
  run<T>(area: Area, fn: () => Promise<T>): Promise<T>
  closed(): boolean
}

export interface CtxControl extends Ctx {
  close(): void
  /** Operations called and not yet ended. */
  busy(): number
  /** Resolves once every operation called so far has ended. */
  drain(): Promise<void>
}

export const closedError = () => new DOMException('the store is closed', 'InvalidStateError')

export function createCtx(dir: string): CtxControl {
  const tails = new Map<Area, Promise<unknown>>()
  let closed = false
  let busy = 0
  return {
    path: (...parts) => join(dir, ...parts),
    run(area, fn) {
      if (closed) return Promise.reject(closedError())
      busy++
      const p = (tails.get(area) ?? Promise.resolve()).then(fn)
      tails.set(
        area,
        p.catch(() => {}).finally(() => busy--),
      )
      return p
    },
    closed: () => closed,
    busy: () => busy,
    close() {
      closed = true
    },
    async drain() {
      await Promise.all(tails.values())
    },
  }
}
