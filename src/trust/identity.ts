/**
 * The tab's persistent Ed25519 identity. Tabs of one origin share IndexedDB, yet each needs its own
 * PeerId, so identities live in numbered slots: a tab holds its slot's Web Lock while open and
 * remembers the slot in sessionStorage, so a reload reclaims the same slot and keeps its PeerId.
 */
import type { PrivateKey } from '@libp2p/interface'
import type { Store } from '../store/db.ts'
import { generateIdentity, privateKeyFromBytes, privateKeyToBytes } from './keys.ts'

const SLOT_KEY = 'peer-compute:identity-slot'
const MAX_SLOTS = 64

/** Holds the named lock until the page goes away; resolves false at once if another tab holds it. */
function holdLock(name: string, waitMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const signal = waitMs > 0 ? AbortSignal.timeout(waitMs) : undefined
    navigator.locks
      .request(name, waitMs > 0 ? { signal: signal! } : { ifAvailable: true }, (lock) => {
        resolve(lock != null)
        return lock ? new Promise<void>(() => {}) : undefined
      })
      .catch(() => resolve(false))
  })
}

async function claimSlot(storeName: string): Promise<number> {
  const saved = sessionStorage.getItem(`${SLOT_KEY}:${storeName}`)
  const remembered = saved == null ? -1 : Number(saved)
  // A reloading tab's old document may still hold its lock for a moment: wait briefly for it.
  if (
    Number.isInteger(remembered) &&
    remembered >= 0 &&
    (await holdLock(`${storeName}:id:${remembered}`, 2000))
  ) {
    return remembered
  }
  for (let slot = 0; slot < MAX_SLOTS; slot++) {
    if (await holdLock(`${storeName}:id:${slot}`, 0)) {
      sessionStorage.setItem(`${SLOT_KEY}:${storeName}`, String(slot))
      return slot
    }
  }
  throw new Error(`more than ${MAX_SLOTS} peer-compute tabs are open in this browser`)
}

export async function loadOrCreateIdentity(store: Store, storeName: string): Promise<PrivateKey> {
  const slot = `tab-${await claimSlot(storeName)}`
  const saved = await store.getIdentity(slot)
  if (saved) return privateKeyFromBytes(saved)
  const key = await generateIdentity()
  await store.putIdentity(slot, privateKeyToBytes(key))
  return key
}
