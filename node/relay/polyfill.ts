/**
 * What libp2p expects of its platform and Node 20 lacks, imported before anything else:
 * Promise.withResolvers, and a global WebSocket (the WebSockets transport dials with it).
 */
import { WebSocket as NodeWebSocket } from 'ws'

const P = Promise as unknown as { withResolvers?: () => unknown }
if (typeof P.withResolvers !== 'function') {
  P.withResolvers = function withResolvers<T>() {
    let resolve!: (v: T | PromiseLike<T>) => void
    let reject!: (e: unknown) => void
    const promise = new Promise<T>((res, rej) => {
      resolve = res
      reject = rej
    })
    return { promise, resolve, reject }
  }
}

/**
 * ws's WebSocket emits 'error' as an EventEmitter does: with no listener, an uncaught exception that
 * ends the process. libp2p stops listening when a dial is aborted (a timeout, a stop) and does not
 * close the socket, so a connect that fails after that killed a test peer. A listener of its own
 * keeps the error from throwing; libp2p's listeners still see every error while they are there.
 */
class QuietWebSocket extends NodeWebSocket {
  constructor(...args: ConstructorParameters<typeof NodeWebSocket>) {
    super(...args)
    this.on('error', () => {})
  }
}
globalThis.WebSocket ??= QuietWebSocket as unknown as typeof WebSocket
