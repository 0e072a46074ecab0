/** Wires the model hub to libp2p: serves `/peer-compute/model/1.0.0` and fetches over direct WebRTC only. */
import { peerIdFromString } from '@libp2p/peer-id'
import type { Discovery } from '../net/discovery.ts'
import { type BrowserNode, directConnection } from '../net/node.ts'
import { ModelTransferError } from '../shared/errors.ts'
import { MODEL_PROTOCOL } from '../shared/protocol.ts'
import type { ModelHubService } from './hub.ts'

export interface ConnectOptions {
  node: BrowserNode
  discovery: Discovery
  /** Called with the cached CIDs after every change, so adverts list them. */
  onCached(cids: string[]): void
  maxInboundStreams?: number
}

export async function connectModelHub(hub: ModelHubService, o: ConnectOptions): Promise<void> {
  // Not allowed on limited (relayed) connections: model bytes never pass through the relay.
  await o.node.handle(MODEL_PROTOCOL, hub.provider.handler, { maxInboundStreams: o.maxInboundStreams ?? 16 })
  hub.attach({
    selfId: o.node.peerId.toString(),
    async open(peer, signal) {
      const conn = directConnection(o.node, peerIdFromString(peer))
      if (conn == null) throw new ModelTransferError(`no direct WebRTC connection to ${peer}`)
      return conn.newStream(MODEL_PROTOCOL, { signal })
    },
    advertisers(cid) {
      o.discovery.want(cid) // holders of a model we fetch rank first for links
      return o.discovery
        .peers()
        .filter((p) => p.direct && p.advert.models.includes(cid))
        .map((p) => p.id)
    },
  })
  hub.events.addEventListener('change', () => {
    hub.cached().then(o.onCached, () => {})
  })
}
