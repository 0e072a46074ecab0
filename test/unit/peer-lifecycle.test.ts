/**
 * createPeer (src/peer.ts) over a Node runtime, no relay: its services stop in reverse of their
 * start, and one that fails to stop skips none of the others.
 */
import '../../node/polyfills.ts'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { afterAll, describe, expect, it } from 'vitest'
import { createLocks } from '../../node/runtime.ts'
import { createFileStore } from '../../node/store/index.ts'
import { createCatalog } from '../../src/models/catalog.ts'
import { createPeer } from '../../src/peer.ts'
import type { Store } from '../../src/store/db.ts'
import { stubEngine } from '../helpers/stub-engine.ts'

const dirs: string[] = []
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true })
})

/** A peer whose engine and store record into `calls` what the stop reaches of them. */
async function recordedPeer(calls: string[], o: { engineCloseFails?: boolean } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'pc-life-'))
  dirs.push(dir)
  const files = await createFileStore(dir)
  const store = new Proxy(files, {
    get(target, key, receiver) {
      const recorded = { stop: 'store stop', flushJobStates: 'store flush' }[String(key)]
      if (recorded === undefined) return Reflect.get(target, key, receiver)
      const fn = Reflect.get(target, key, receiver) as () => unknown
      return () => {
        calls.push(recorded)
        return fn()
      }
    },
  }) as Store
  const engine = stubEngine({
    close() {
      calls.push('engine close')
      if (o.engineCloseFails) throw new Error('engine would not close')
    },
  })

  const peer = await createPeer({
    runtime: {
      store,
      privateKey: await generateKeyPair('Ed25519'),
      catalog: createCatalog([], 'file:///'),
      locks: createLocks(),
    },
    storeName: `peer-compute:${dir}`,
    engine,
    relays: [],
    iceServers: [],
    contribute: false,
    election: false,
  })
  // The engine probe answered: the engine is in use, so the stop closes it.
  await expect.poll(() => peer.capabilities().eps).toEqual(['cpu'])
  peer.node.addEventListener('stop', () => calls.push('node stop'))
  return { peer, files }
}

describe('createPeer lifecycle', () => {
  it('stops the node and compute, then flushes held-back writes, then closes the store', async () => {
    const calls: string[] = []
    const { peer, files } = await recordedPeer(calls)
    expect(peer.node.status).toBe('started')
    calls.length = 0
    await peer.stop()
    expect(peer.node.status).toBe('stopped')
    expect(calls).toEqual(['node stop', 'engine close', 'store flush', 'store stop'])
    await peer.stop() // once only
    expect(calls).toHaveLength(4)
    await files.shutdown()
  })

  it('a service that fails to stop skips none after it; stop() rejects with its error', async () => {
    const calls: string[] = []
    const { peer, files } = await recordedPeer(calls, { engineCloseFails: true })
    calls.length = 0
    await expect(peer.stop()).rejects.toThrow('engine would not close')
    expect(calls).toEqual(['node stop', 'engine close', 'store flush', 'store stop'])
    expect(peer.node.status).toBe('stopped')
    await files.shutdown()
  })
})
