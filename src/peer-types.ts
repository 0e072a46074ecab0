/** The options and events of createPeer (src/peer.ts), apart so the builders (src/peer-*.ts) need not import it. */
import type { PrivateKey } from '@libp2p/interface'
import type { InferenceEngine } from './compute/bridge.ts'
import type { DisputeRunner } from './compute/dispute-runner.ts'
import type { TestHooks } from './jobs/adversary.ts'
import type { Catalog } from './models/catalog.ts'
import type { Download } from './models/download.ts'
import type { Store } from './store/db.ts'
import type { Locks } from './trust/credits.ts'

export interface PeerOptions {
  /** Relay multiaddrs; by default read from `peer-compute.json` next to the page. */
  relays?: string[]
  /**
   * STUN/TURN servers for WebRTC, passed to every RTCPeerConnection as given; by default read from
   * `peer-compute.json` (which may mint time-limited TURN credentials, renewed before they expire).
   */
  iceServers?: RTCIceServer[]
  /** Where `peer-compute.json` is looked up (its folder); default the page's URL. */
  configUrl?: string
  /** Catalog URL; default `models/catalog.json` relative to the page. */
  catalogUrl?: string
  /** IndexedDB database name, so several peers can share an origin. */
  storeName?: string
  contribute?: boolean
  maxSlots?: number
  engine?: InferenceEngine
  /** One compute tab per browser (Web Locks election); the app and the widget turn it on. */
  election?: boolean
  /** Start no inference worker until this tab contributes or runs a job of its own. */
  lazyEngine?: boolean
  advertIntervalMs?: number
  /** Direct links this peer dials at most (default 32; a quarter of them kept with no jobs to place). */
  maxLinks?: number
  /**
   * Ended jobs whose records (outputs included) stay in IndexedDB, newest first (default 1000):
   * older ones are deleted, so an `id` whose record is gone runs again.
   */
  jobHistory?: number
  /**
   * …and at most this many bytes of them (default 256 MiB; `Infinity` for no byte limit), a soft cap:
   * the newest ended job's record is kept whatever its size.
   */
  jobHistoryBytes?: number
  /**
   * Test-only misbehaviour of the job handler and the model provider (src/jobs/adversary.ts); ignored
   * outside the test build (dist-test/).
   */
  testHooks?: TestHooks
  /** For a peer outside a tab (node/peer.ts): what it has in place of the tab's platform. */
  runtime?: PeerRuntime
}

/**
 * What a tab takes from the browser (IndexedDB, an identity slot, catalog.json, Web Locks), given
 * instead by a peer that runs elsewhere. Everything else is the same code on both.
 */
export interface PeerRuntime {
  store: Store
  privateKey: PrivateKey
  catalog: Catalog
  locks: Locks
  /** Model URL fetches (a Node peer also reads `file:` URLs). */
  download?: Download
  /**
   * Runs the models of disputes about jobs this peer served (graph optimisation 'disabled', apart from
   * the job engine); the peer closes it at stop. Default: a WASM worker of its own.
   */
  disputeRunner?: DisputeRunner
}

/** The events of `peer.events`: plain Events, read the new state from the peer. */
export interface PeerEvents {
  /** status() changed: relay, links, ICE servers, contributing, engine capabilities. */
  status: Event
  /** peers() changed. */
  peers: Event
  /** A job this peer submitted changed (jobs(), job()). */
  jobs: Event
  /** running() changed: a served job started or ended. */
  serving: Event
}
