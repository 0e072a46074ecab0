/** A Worker stand-in for bridge tests: `api` exposed with comlink over a MessageChannel in this thread. */
import { MessageChannel } from 'node:worker_threads'
import { expose } from 'comlink'

/**
 * `api(post)` is what the worker exposes; `post` sends a message from the worker side (run
 * started/ended, a stop flag). `onTerminate` runs when the bridge terminates it (its port closes).
 */
export function exposeAsWorker(api: (post: (m: unknown) => void) => object, onTerminate: () => void): Worker {
  const { port1, port2 } = new MessageChannel()
  expose(
    api((m) => port2.postMessage(m)),
    port2 as unknown as Parameters<typeof expose>[1],
  )
  port1.start()
  return {
    postMessage: (m: unknown, t?: Transferable[]) => port1.postMessage(m, t as never),
    addEventListener: (type: string, fn: (e: unknown) => void) => port1.addEventListener(type, fn as never),
    removeEventListener: (type: string, fn: (e: unknown) => void) =>
      port1.removeEventListener(type, fn as never),
    terminate: () => {
      onTerminate()
      port1.close()
    },
  } as unknown as Worker
}

/** A promise's outcome as 'ok' or its error's name. */
export const outcome = (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (e: Error) => e.name,
  )
