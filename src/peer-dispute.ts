/**
 * createPeer's side of disputes about the jobs it served (src/dispute/serve.ts): registered whether
 * or not it contributes, since a peer that just stopped may still be asked about a job it ran; the
 * credit log's receipts say which jobs those are.
 */

import type { Logger } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import { createDisputeRunner, type DisputeRunner } from './compute/dispute-runner.ts'
import { type CommitRequest, type DisputeServer, serveDispute } from './dispute/serve.ts'
import { lyingTrace } from './jobs/adversary.ts'
import type { BrowserNode } from './net/node.ts'
import type { PeerState } from './peer-state.ts'
import type { PeerOptions } from './peer-types.ts'
import type { Lifecycle } from './shared/lifecycle.ts'
import type { CreditRecord } from './store/schema.ts'
import { decodeReceipt } from './trust/receipt.ts'

/** How old a served job may be and still be disputed (by its credit entry's time). */
export const DISPUTE_WINDOW_MS = 10 * 60_000

/** Dispute streams at once on one connection; serveDispute answers `busy` past 2 a requester. */
const MAX_INBOUND_STREAMS = 4

export interface ServedLookup {
  recent(since: number): Promise<CreditRecord[]>
}

/**
 * Whether `req` names a job this peer served, by its own receipt in the credit log: same job,
 * requester, model and inputs, appended within `windowMs`. Newest entries are read first.
 */
export function admitServed(
  credits: ServedLookup,
  selfId: string,
  o: { windowMs?: number; now?: () => number } = {},
): (req: CommitRequest) => Promise<boolean> {
  const windowMs = o.windowMs ?? DISPUTE_WINDOW_MS
  const now = o.now ?? Date.now
  const same = (a: CID, b: CID) => a.equals(b)
  return async (req) => {
    const recs = await credits.recent(now() - windowMs)
    for (let i = recs.length - 1; i >= 0; i--) {
      const rec = recs[i]!
      let body: ReturnType<typeof decodeReceipt>['body']
      try {
        body = decodeReceipt(rec.receipt).body
      } catch {
        continue
      }
      if (!same(body.job, req.job)) continue
      return (
        body.worker === selfId &&
        body.requester === req.requester &&
        same(body.model, req.model) &&
        same(body.input, req.input)
      )
    }
    return false
  }
}

/**
 * Serves `/peer-compute/dispute/2.0.0` on direct connections (libp2p runs no handler on a relayed
 * one unless told to): registered at start, unregistered at stop before the node stops, and the
 * runner's worker ended with it.
 */
export function serveDisputes(
  opts: PeerOptions,
  c: { node: BrowserNode; state: PeerState; selfId: string; log: Logger },
  life: Lifecycle,
  /** Shared with the requester's referee: one dispute worker per peer, its runs queued. */
  runner: DisputeRunner = opts.runtime?.disputeRunner ?? createDisputeRunner(),
): DisputeServer {
  const { state, node } = c
  // Test build only (dist/ folds this away): a liar whose trace agrees with its wrong result.
  const lie =
    __PC_TEST_HOOKS__ && opts.testHooks?.disputeLie && opts.testHooks.adversary === 'always-wrong'
      ? lyingTrace
      : undefined
  const server = serveDispute({
    key: state.privateKey,
    // Only models held here: a dispute fetches nothing from other peers.
    async model(cid) {
      const key = cid.toString()
      if (!(await state.models.has(key))) return undefined
      return state.models.get(key).catch(() => undefined)
    },
    run: (model, inputs, signal) => runner.run(model, inputs, signal),
    admit: admitServed(state.credits, c.selfId),
    ...(runner.ep ? { ep: runner.ep } : {}),
    ...(lie ? { lie } : {}),
  })
  life.add('disputes', {
    start: () => node.handle(server.protocol, server.handler, { maxInboundStreams: MAX_INBOUND_STREAMS }),
    async stop() {
      await node.unhandle(server.protocol)
      server.clear()
      await runner.close()
    },
  })
  return server
}
