/** createPeer's jobs (src/peer.ts): serving others' jobs, and submitting our own. */

import type { Logger } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import type { ControlsInternals } from './compute/controls.ts'
import type { DisputeRunner } from './compute/dispute-runner.ts'
import type { DisputeServer } from './dispute/serve.ts'
import { createAdaptive } from './jobs/adaptive.ts'
import { createCapacityWaiters } from './jobs/capacity.ts'
import { createDispatcher } from './jobs/dispatch.ts'
import { createDisputer } from './jobs/dispute.ts'
import { createExecutor } from './jobs/execute.ts'
import { createJobHandler, type ServedJob } from './jobs/handler.ts'
import { createStoreJournal } from './jobs/journal.ts'
import { createRequester } from './jobs/requester.ts'
import { createScheduler } from './jobs/scheduler.ts'
import { type BrowserNode, directConnection } from './net/node.ts'
import type { PeerAdverts } from './peer-compute.ts'
import type { PeerState } from './peer-state.ts'
import type { PeerEvents, PeerOptions } from './peer-types.ts'
import type { Lifecycle } from './shared/lifecycle.ts'

export type Requester = ReturnType<typeof createRequester>

interface JobsContext {
  node: BrowserNode
  state: PeerState
  controls: ControlsInternals
  adverts: PeerAdverts
  selfId: string
  emit(type: keyof PeerEvents): void
  log: Logger
  /** Runs the referee's one-node models (graph optimisation 'disabled'); without it, no disputes. */
  disputeRunner?: DisputeRunner
  /** Runs and keeps traced jobs (JobBody.trace): the dispute server. */
  tracer?: Pick<DisputeServer, 'traceJob'>
}

/** Serves `/peer-compute/job`: jobs run through the controls, and each receipt goes into the credit log. */
export async function serveJobs(
  opts: PeerOptions,
  c: JobsContext,
  serving: Map<string, ServedJob>,
): Promise<void> {
  const { controls, state, emit, log } = c
  const jobHandler = createJobHandler({
    privateKey: state.privateKey,
    selfId: c.selfId,
    admission: controls.admission,
    engine: controls.jobEngine,
    models: state.models,
    log: logger('peer-compute:jobs'),
    adapter: c.adverts.adapterClass,
    ...(c.tracer ? { tracer: c.tracer } : {}),
    ...(__PC_TEST_HOOKS__ && opts.testHooks ? { testHooks: opts.testHooks } : {}),
    onStart: (j) => {
      serving.set(j.job, j)
      controls.jobStarted(j)
      emit('serving')
    },
    onEnd: async (j, outcome) => {
      serving.delete(j.job)
      controls.jobEnded(j, outcome)
      emit('serving')
      if (outcome.receipt)
        await state.credits.append(outcome.receipt).catch((e) => log.error('credit log: %s', e))
    },
  })
  await c.node.handle(jobHandler.protocol, jobHandler.handler, { maxInboundStreams: 64 })
}

/**
 * Our own jobs: the capacity waiters, then the requester (its start() resumes the jobs a previous
 * page left unfinished). Both stop before discovery and the node they place jobs through.
 */
export function buildRequester(
  c: JobsContext,
  history: { jobHistory: number; jobHistoryBytes: number },
  life: Lifecycle,
): Requester {
  const { node, state, selfId } = c
  const { privateKey, reputation, models } = state
  const { discovery, adapterClass } = c.adverts
  const scheduler = createScheduler(discovery, selfId)
  const capacity = life.add(
    'capacity',
    createCapacityWaiters(
      [
        [discovery.events, 'change'],
        [scheduler.events, 'release'],
      ],
      { free: () => scheduler.freeSlots(reputation.trusted) },
    ),
  )
  const execute = createExecutor({
    privateKey,
    selfId,
    engine: c.controls.engine,
    models,
    adapter: adapterClass,
  })
  const links = {
    direct: (peer: string) => directConnection(node, peerIdFromString(peer)),
    redial: (peer: string, signal: AbortSignal) => discovery.redial(peer, signal),
  }
  const log = logger('peer-compute:requester')
  const runner = c.disputeRunner
  // A 1–1 disagreement is settled by dispute (src/jobs/dispute.ts) before a third replica is bought.
  const disputer = runner
    ? createDisputer({
        links: { direct: links.direct },
        // The requester fetches the model if it lacks it (catalog URL or peers, hash-checked).
        modelBytes: (cid) => models.get(cid).catch(() => undefined),
        run: (m, i) => runner.run(m, i),
        log: logger('peer-compute:dispute'),
      })
    : undefined
  const requester = createRequester({
    ...(disputer ? { disputer } : {}),
    dispatcher: createDispatcher({ links, privateKey, selfId, scheduler, execute }),
    selfId,
    scheduler,
    journal: createStoreJournal({ store: state.store, log, onChange: () => c.emit('jobs'), ...history }),
    reputation,
    adaptive: createAdaptive(reputation),
    outputsOf: (cid) => state.catalog.byCid(cid)?.outputs,
    log,
    capacityChanged: (signal) => capacity.wait(signal),
    noPath: () => discovery.noPath(),
  })
  return life.add('requester', requester)
}
