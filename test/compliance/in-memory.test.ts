/** Runs the `/peer-compute/job/1.1.0` compliance suite over in-memory stream pairs (no network). */
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { streamPair } from '@libp2p/utils'
import { JOB_PROTOCOL } from '../../src/shared/protocol.ts'
import { generateIdentity, peerIdOf } from '../../src/trust/keys.ts'
import { contributorUnderTest, type Harness, IDLE_MS, type PeerKeys, SLOTS } from './harness.ts'
import { tests } from './job-protocol.ts'

const open = new WeakMap<Harness, Stream[]>()

async function keys(): Promise<PeerKeys> {
  const privateKey = await generateIdentity()
  return { privateKey, id: peerIdOf(privateKey) }
}

/** A Connection as far as the job protocol uses one: `remotePeer` and `newStream`. */
function connectionTo(remotePeer: PeerId, streams: Stream[], serve: (inbound: Stream) => void): Connection {
  const conn: Pick<Connection, 'remotePeer' | 'newStream'> = {
    remotePeer,
    async newStream(protocols, options) {
      // Negotiates as multistream-select would: the first of ours the handler also speaks.
      const protocol = [protocols].flat().find((p) => p === JOB_PROTOCOL)
      if (protocol == null) throw new Error(`protocols ${protocols} are not supported`)
      options?.signal?.throwIfAborted()
      const [outbound, inbound] = await streamPair({ protocol })
      outbound.protocol = protocol // as a negotiated libp2p stream has it
      streams.push(outbound, inbound)
      serve(inbound)
      return outbound
    },
  }
  return conn as Connection
}

tests({
  async setup() {
    const requester = await keys()
    const contributor = await keys()
    const { admission, engine, job, model, unknownModel } = await contributorUnderTest(contributor)
    const streams: Stream[] = []
    // The contributor's view of the connection: the remote peer is the requester.
    const inbound = connectionTo(peerIdFromPrivateKey(requester.privateKey), streams, () => {})
    const contributorPeer = peerIdFromPrivateKey(contributor.privateKey)
    const h: Harness = {
      requester,
      contributor,
      connection: connectionTo(contributorPeer, streams, (s) => job.handler(s, inbound)),
      async rogue(serve) {
        return connectionTo(contributorPeer, streams, (s) => {
          serve(s).catch((err) => s.abort(err as Error))
        })
      },
      model: model,
      unknownModel: unknownModel,
      idleStreamMs: IDLE_MS,
      slots: SLOTS,
      setContributing: async (on) => admission.setContributing(on),
      freeSlots: async () => admission.free,
      engine,
    }
    open.set(h, streams)
    return h
  },
  async teardown(h) {
    for (const s of open.get(h) ?? []) {
      if (s.status === 'open' || s.status === 'closing') s.abort(new Error('test over'))
    }
  },
})
