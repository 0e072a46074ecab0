/**
 * A peer outside the browser: the app's own createPeer (src/peer.ts) with a data directory for its
 * state, a key file, onnxruntime-node for compute, and node-datachannel under @libp2p/webrtc.
 *
 * @example
 * const peer = await createNodePeer({ dir: '/var/lib/peer-compute', relays: [relayAddr], contribute: true })
 * await peer.submit('mlp-tiny', { x })
 */
import './polyfills.ts'
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { DEFAULT_SETTINGS } from '../src/compute/settings.ts'
import type { Download } from '../src/models/download.ts'
import { createPeer, type Peer } from '../src/peer.ts'
import { InvalidOptionError } from '../src/shared/errors.ts'
import { createNodeDisputeRunner } from './dispute-runner.ts'
import { createNodeEngine } from './engine.ts'
import type { NodeEp } from './ep.ts'
import { createDownload, createLocks, loadCatalogFrom, loadKey } from './runtime.ts'
import { createFileStore } from './store/index.ts'

export interface NodePeerOptions {
  /** Data directory: key, model cache, jobs, reputation, credit log. One process at a time. */
  dir: string
  /** Key file (default `<dir>/peer.key`); the PeerId survives restarts. */
  keyFile?: string
  relays?: string[]
  iceServers?: RTCIceServer[]
  /** Where peer-compute.json is served (a site URL), for relays and (minted) ICE servers. */
  configUrl?: string
  /** catalog.json file or URL (default: the one this package ships). */
  catalog?: string
  contribute?: boolean
  maxSlots?: number
  /** onnxruntime-node intra-op threads per session. */
  threads?: number
  /** The execution provider jobs run on (default 'cpu'); `chooseEp` (node/ep.ts) checks it first. */
  ep?: NodeEp
  /** Model cache quota and largest model, in bytes. */
  cacheBytes?: number
  maxModelBytes?: number
  advertIntervalMs?: number
  /** Direct links dialled at most (src/net/link-plan.ts). */
  maxLinks?: number
}

export interface NodePeer extends Peer {
  readonly dir: string
  /** Fetches a catalog URL's bytes: HTTP, or `file:` under a local catalog's folder. */
  readonly download: Download
}

/** catalog.json next to this module's package: the built app's, else the sources'. */
export function packagedCatalog(): string {
  const here = fileURLToPath(new URL('.', import.meta.url))
  const found = ['../dist/models/catalog.json', '../public/models/catalog.json']
    .map((p) => join(here, p))
    .find((p) => existsSync(p))
  if (!found) throw new InvalidOptionError('no catalog.json found: pass --catalog <file or URL>')
  return found
}

export async function createNodePeer(o: NodePeerOptions): Promise<NodePeer> {
  await mkdir(o.dir, { recursive: true })
  const store = await createFileStore(o.dir)
  try {
    const [privateKey, { catalog, fileRoot }] = await Promise.all([
      loadKey(o.keyFile ?? join(o.dir, 'peer.key')),
      loadCatalogFrom(o.catalog ?? packagedCatalog()),
    ])
    // One worker process per slot: jobs compute in parallel, and the network never waits on ORT.
    const download = createDownload(fileRoot)
    const slots = o.maxSlots ?? DEFAULT_SETTINGS.maxJobs
    const engine = createNodeEngine({
      ...(o.threads ? { threads: o.threads } : {}),
      ...(o.ep ? { ep: o.ep } : {}),
      // A GPU runs one job at a time anyway, and each worker's sessions take their own GPU memory.
      workers: (o.ep ?? 'cpu') === 'cpu' ? slots : 1,
    })
    const peer = await createPeer({
      runtime: {
        store,
        privateKey,
        catalog,
        locks: createLocks(),
        download,
        // the peer's stop awaits its close: its process is killed or exits once idle
        disputeRunner: createNodeDisputeRunner(),
      },
      // Names its locks and channels: peers of different directories in one process stay apart.
      storeName: `peer-compute:${resolve(o.dir)}`,
      engine,
      ...(o.relays ? { relays: o.relays } : {}),
      ...(o.iceServers ? { iceServers: o.iceServers } : {}),
      ...(o.configUrl ? { configUrl: o.configUrl } : {}),
      contribute: o.contribute ?? false,
      maxSlots: slots,
      ...(o.advertIntervalMs ? { advertIntervalMs: o.advertIntervalMs } : {}),
      ...(o.maxLinks ? { maxLinks: o.maxLinks } : {}),
      election: false,
      lazyEngine: !o.contribute,
    })
    if (o.cacheBytes !== undefined) await peer.models.setQuota(o.cacheBytes)
    if (o.maxModelBytes !== undefined) await peer.models.setMaxModelBytes(o.maxModelBytes)
    const stopPeer = peer.stop.bind(peer)
    // Running jobs are handed back and their processes ended before this process exits.
    const stop = async () => {
      await stopPeer()
      await store.shutdown() // writes started before the stop land, then the lock goes
      await engine.closed()
    }
    return Object.assign(peer, { dir: o.dir, stop, download })
  } catch (err) {
    store.stop()
    throw err
  }
}
