/** createPeer's state (src/peer.ts): store, identity, catalog, model hub, credit log, reputation. */
import type { Logger, PrivateKey } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { type Catalog, loadCatalog } from './models/catalog.ts'
import { createModelHub, type ModelHubService } from './models/hub.ts'
import type { PeerOptions } from './peer-types.ts'
import type { Lifecycle, Service } from './shared/lifecycle.ts'
import { openStore, type Store } from './store/db.ts'
import { type CreditsInternals, createCredits } from './trust/credits.ts'
import { loadOrCreateIdentity } from './trust/identity.ts'
import { createReputation, type Reputation } from './trust/reputation.ts'

export interface PeerState {
  store: Store
  storeName: string
  privateKey: PrivateKey
  catalog: Catalog
  models: ModelHubService
  credits: CreditsInternals
  reputation: Reputation
}

/** What the model hub asks of services built after it (called only once the peer is built). */
export interface HubHooks {
  /** Models that running jobs hold. */
  inUse(): string[]
  /** A person imported a model. */
  onImport(): void
}

/**
 * Registers, in this order, the store (stopped last: every service writes through it), the credit
 * log (its channel closes once its appends landed) and the held-back writes.
 */
export async function buildState(
  opts: PeerOptions,
  life: Lifecycle,
  hooks: HubHooks,
  log: Logger,
): Promise<PeerState> {
  const storeName = opts.storeName ?? 'peer-compute'
  const rt = opts.runtime
  const store = life.add('store', rt?.store ?? (await openStore(storeName)))
  const privateKey = rt?.privateKey ?? (await loadOrCreateIdentity(store, storeName))
  const catalog =
    rt?.catalog ??
    (await loadCatalog(opts.catalogUrl ?? new URL('models/catalog.json', location.href).toString()))
  const models = await createModelHub({
    store,
    catalog,
    log: logger('peer-compute:models'),
    ...(rt?.download ? { download: rt.download } : {}),
    ...(__PC_TEST_HOOKS__ && opts.testHooks ? { testHooks: opts.testHooks } : {}),
    inUse: hooks.inUse,
    onImport: hooks.onImport,
  })
  const credits = life.add(
    'credits',
    await createCredits({ store, storeName, privateKey, ...(rt ? { locks: rt.locks } : {}) }),
  )
  const reputation = await createReputation(store)
  life.add('writes', heldBackWrites(store, reputation, credits, log))
  return { store, storeName, privateKey, catalog, models, credits, reputation }
}

/**
 * Held-back writes (new jobs' state, reputation, credits) start at pagehide, as the page may get
 * no other chance, and at stop: registered before the node, so the jobs its stop ends land too.
 */
function heldBackWrites(
  store: Store,
  reputation: Reputation,
  credits: CreditsInternals,
  log: Logger,
): Service {
  const flush = () => Promise.all([store.flushJobStates(), reputation.flush(), credits.flush()])
  const onHide = () => void flush().catch(() => {})
  return {
    start: () => globalThis.addEventListener?.('pagehide', onHide),
    async stop() {
      globalThis.removeEventListener?.('pagehide', onHide)
      // Logged, not thrown: stop goes on to close the store, and those writes are lost either way.
      await flush().catch((e) => log.error('writes at stop: %s', e))
    },
  }
}
