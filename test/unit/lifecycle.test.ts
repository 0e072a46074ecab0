/** The one lifecycle of a composition root's services (src/shared/lifecycle.ts). */
import { describe, expect, it } from 'vitest'
import { createLifecycle, type Service } from '../../src/shared/lifecycle.ts'

/** A service that records its start and stop in `calls`; `fail` makes its stop throw. */
function recorder(
  calls: string[],
  name: string,
  o: { start?: boolean; fail?: boolean; async?: boolean } = {},
) {
  const stop = () => {
    calls.push(`stop ${name}`)
    if (o.fail) throw new Error(`${name} failed`)
  }
  const service: Service = {
    stop: o.async ? async () => stop() : stop,
  }
  if (o.start !== false) service.start = () => void calls.push(`start ${name}`)
  return service
}

const logSpy = () => {
  const lines: string[] = []
  return {
    lines,
    error: (format: string, ...args: unknown[]) => void lines.push([format, ...args].join(' ')),
  }
}

describe('createLifecycle', () => {
  it('starts in registration order and stops in reverse, starting only services that have start()', async () => {
    const calls: string[] = []
    const life = createLifecycle()
    for (const name of ['store', 'node', 'discovery'])
      life.add(name, recorder(calls, name, { start: name !== 'node' }))
    await life.start()
    await life.stop()
    expect(calls).toEqual(['start store', 'start discovery', 'stop discovery', 'stop node', 'stop store'])
  })

  it('awaits each stop before the next, so a service stops only once those on top of it have', async () => {
    const calls: string[] = []
    const life = createLifecycle()
    life.add('store', recorder(calls, 'store'))
    life.add('writes', {
      async stop() {
        await new Promise((r) => setTimeout(r, 20))
        calls.push('flushed')
      },
    })
    await life.stop()
    expect(calls).toEqual(['flushed', 'stop store'])
  })

  it('a failing stop is logged and skips no other; stop() then rejects with it', async () => {
    const calls: string[] = []
    const log = logSpy()
    const life = createLifecycle(log)
    life.add('a', recorder(calls, 'a'))
    life.add('b', recorder(calls, 'b', { fail: true }))
    life.add('c', recorder(calls, 'c'))
    await expect(life.stop()).rejects.toThrow('b failed')
    expect(calls).toEqual(['stop c', 'stop b', 'stop a'])
    expect(log.lines).toEqual([expect.stringMatching(/^%s did not stop cleanly: %s b Error: b failed/)])
  })

  it('collects several failures, sync or async, into one AggregateError naming them', async () => {
    const calls: string[] = []
    const life = createLifecycle(logSpy())
    life.add('a', recorder(calls, 'a', { fail: true, async: true }))
    life.add('b', recorder(calls, 'b'))
    life.add('c', recorder(calls, 'c', { fail: true }))
    const err = await life.stop().then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(AggregateError)
    expect((err as AggregateError).message).toBe('2 services did not stop cleanly: c, a')
    expect((err as AggregateError).errors.map((e: Error) => e.message)).toEqual(['c failed', 'a failed'])
    expect(calls).toEqual(['stop c', 'stop b', 'stop a'])
  })

  it('stops once: a second stop() gets the first one’s promise', async () => {
    const calls: string[] = []
    const life = createLifecycle()
    life.add('a', recorder(calls, 'a'))
    const [first, second] = [life.stop(), life.stop()]
    expect(second).toBe(first)
    await first
    await life.stop()
    expect(calls).toEqual(['stop a'])
  })

  it('a failed start rejects; stop() then stops every service, started or not', async () => {
    const calls: string[] = []
    const life = createLifecycle()
    life.add('a', recorder(calls, 'a'))
    life.add('b', {
      start() {
        throw new Error('no relay')
      },
      stop: () => void calls.push('stop b'),
    })
    life.add('c', recorder(calls, 'c'))
    await expect(life.start()).rejects.toThrow('no relay')
    await life.stop()
    expect(calls).toEqual(['start a', 'stop c', 'stop b', 'stop a'])
  })

  it('add() returns the service itself, typed as given', () => {
    const life = createLifecycle()
    const store = life.add('store', { stop() {}, flush: () => 1 })
    expect(store.flush()).toBe(1)
  })
})
