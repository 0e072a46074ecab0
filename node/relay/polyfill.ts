/** libp2p 3 uses Promise.withResolvers, which Node 20 lacks. Imported before anything else. */
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

export {}
