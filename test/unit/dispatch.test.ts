/** Dispatch's link rules over stub links: what is retried, when a link is replaced, and slot counts. */
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Connection } from '@libp2p/interface'
import { describe, expect, it } from 'vitest'
import { createDispatcher } from '../../src/jobs/dispatch.ts'
import { peerIdOf } from '../../src/trust/keys.ts'

const key = await generateKeyPair('Ed25519')
const self = peerIdOf(key)
const peer = peerIdOf(await generateKeyPair('Ed25519'))
const model = 'bafkreidyllbzbuwb2fdgttvsc6notidx5yr5wgl6z2qhcptapjy3pkxbja'
const inputs = { x: { dtype: 'float32' as const, dims: [1], data: Float32Array.of(1) } }

/** A link whose streams fail to open as a closing data channel does: with a bare Event. */
const deadLink = () => {
  let opened = 0
  const c = {
    status: 'open',
    remotePeer: { toString: () => peer },
    newStream: async () => {
      opened++
      throw new Event('close')
    },
  } as unknown as Connection
  return { c, opened: () => opened }
}

function setup(link: Connection | undefined | (() => Connection | undefined)) {
  const ends: [boolean, boolean][] = []
  let redials = 0
  const d = createDispatcher({
    links: {
      direct: () => (typeof link === 'function' ? link() : link),
      async redial() {
        redials++
      },
    },
    privateKey: key,
    selfId: self,
    scheduler: {
      begin:
        () =>
        (held = true, delivered = false) =>
          void ends.push([held, delivered]),
    },
    execute: async () => {
      throw new Error('not used')
    },
    retryMs: 1,
  })
  const send = (pinned = false) =>
    d.send(model, inputs, Promise.resolve(undefined as never), peer, 1000, new AbortController().signal, {
      pinned,
    })
  return { send, ends, redials: () => redials }
}

describe('dispatch', () => {
  it('retries a job never sent 3 more times, asking for a new link from the second failure on', async () => {
    const link = deadLink()
    const s = setup(link.c)
    const err = await s.send().catch((e: Error) => e)
    expect((err as Error).name).toBe('JobNotSentError')
    expect(link.opened()).toBe(4)
    expect(s.redials()).toBe(2) // before the 3rd and the 4th try: the same link failed again
    expect(s.ends).toEqual([[true, false]]) // counted once, delivered nothing
  })

  it("dials a named peer's link closed mid-batch again, rather than wait for discovery to", async () => {
    const link = deadLink()
    let gone = false
    const s = setup(() => (gone ? undefined : link.c))
    const sent = s.send(true).catch((e: Error) => e)
    gone = true // closed (ICE disconnected) while the first try was failing on it
    expect(((await sent) as Error).name).toBe('JobNotSentError')
    expect(link.opened()).toBe(1) // never tried again on the closed link
    expect(s.redials()).toBe(3) // before each try after the link was gone
  })

  it('has nothing to send to without a direct link: a picked peer fails at once, a named one after a redial', async () => {
    const s = setup(undefined)
    expect(((await s.send().catch((e: Error) => e)) as Error).name).toBe('NoPeerAvailableError')
    expect(s.redials()).toBe(0) // the quorum picks another
    expect(((await s.send(true).catch((e: Error) => e)) as Error).name).toBe('NoPeerAvailableError')
    expect(s.redials()).toBe(1) // the named peer was dialled again first
    expect(s.ends).toEqual([])
  })

  it('does not wait on a lost link for a peer it picked: the quorum sends the job elsewhere', async () => {
    const link = deadLink()
    let gone = false
    const s = setup(() => (gone ? undefined : link.c))
    const sent = s.send().catch((e: Error) => e)
    gone = true
    expect(((await sent) as Error).name).toBe('JobNotSentError')
    expect(s.redials()).toBe(0)
  })
})
