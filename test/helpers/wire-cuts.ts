/** Disputes over cuts on the wire, for tests: contributors serving a traced job, remote cut parties to them. */
import type { Stream } from '@libp2p/interface'
import { streamPair } from '@libp2p/utils'
import { bisectCuts } from '../../src/dispute/bisect-cuts.ts'
import { disputeRules } from '../../src/dispute/commit.ts'
import { type DisputeServerOptions, serveDispute } from '../../src/dispute/serve.ts'
import { type RemoteCutParty, remoteCutParty } from '../../src/dispute/wire-cuts.ts'
import { DISPUTE_PROTOCOL } from '../../src/shared/protocol.ts'
import { generateIdentity, peerIdOf } from '../../src/trust/keys.ts'
import type { CompareRule } from '../../src/trust/policy.ts'
import type { tracedJob } from './cut-trace.ts'
import { ortRun } from './ort-run.ts'

export type Traced = Awaited<ReturnType<typeof tracedJob>>
export const EXACT: CompareRule = { kind: 'exact' }
export const TOLERANCE: CompareRule = { kind: 'tolerance', atol: 1e-3, rtol: 1e-2 }

const open: Stream[] = []
/** Aborts every stream pair() opened (for afterEach). */
export function closeStreams(): void {
  for (const s of open.splice(0)) s.abort(new Error('test over'))
}
export async function pair(): Promise<[Stream, Stream]> {
  const streams = await streamPair({ protocol: DISPUTE_PROTOCOL })
  open.push(...streams)
  return streams
}

/** A contributor serving `t`'s model (running its real trace unless `extra` says otherwise). */
export async function contributor(t: Traced, extra: Partial<DisputeServerOptions> = {}) {
  const key = await generateIdentity()
  const counts = { runs: 0 }
  const server = serveDispute({
    key,
    model: async (c) => (c.equals(t.job.model) ? t.plan.model.bytes : undefined),
    run: async (m, i) => {
      counts.runs++
      return ortRun(m, i)
    },
    ...extra,
  })
  return { key, server, id: peerIdOf(key), counts }
}
export type Contributor = Awaited<ReturnType<typeof contributor>>

export const partyOptions = (t: Traced, worker: string, compare: CompareRule) => ({
  worker,
  job: t.job.job,
  model: t.job.model,
  input: t.job.input,
  inputs: t.inputs,
  compare,
})

/** A remote cut party asking `c`'s server over a fresh stream pair, as `requester`. */
export async function connect(
  t: Traced,
  c: Contributor,
  compare: CompareRule,
  extra: Partial<Parameters<typeof remoteCutParty>[1]> = {},
  requester = 'requester',
): Promise<RemoteCutParty> {
  const [client, side] = await pair()
  void c.server.serve(side, requester)
  return remoteCutParty(client, { ...partyOptions(t, c.id, compare), ...extra })
}

export const search = (
  t: Traced,
  compare: CompareRule,
  a: RemoteCutParty,
  b: RemoteCutParty,
  ids: string[],
) =>
  bisectCuts({
    plan: t.plan,
    rules: disputeRules(compare),
    a,
    b,
    workers: { a: ids[0]!, b: ids[1]! },
    job: t.job,
    inputs: t.inputs,
  })
