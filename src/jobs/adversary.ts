/**
 * Adversarial contributor behaviours, for tests only. They are switched on through a test hook
 * (`createPeer({ testHooks })`, which the app fills only from `globalThis.__peerComputeTestHooks`,
 * set by a test driver before the page loads) and are never offered in the UI. Only the test build
 * (`npm run build:test`, dist-test/) contains this module: see src/shared/build-flags.d.ts.
 */
import { CID } from 'multiformats/cid'
import type { NamedTensors } from '../shared/tensor.ts'
import { tensorsCid } from '../shared/tensor-codec.ts'
import { signReceipt } from '../trust/receipt.ts'
import type { Executed, ExecutorOptions } from './execute.ts'
import type { CheckedJobRequest } from './messages.ts'

export const ADVERSARY_MODES = [
  'always-wrong',
  'wrong-10',
  'forged-signature',
  'replay',
  'different-model',
  'never-answer',
  'drop-connection',
  'slow',
] as const
export type AdversaryMode = (typeof ADVERSARY_MODES)[number]

/** Read at every job (and every model chunk sent), so a test can switch a live tab's behaviour. */
export interface TestHooks {
  adversary?: AdversaryMode | undefined
  /** For 'slow': delay before replying (default 5 s). */
  slowMs?: number
  /** For 'different-model': the CID actually run. */
  otherModel?: string
  /** A model provider that sends bad chunks (src/models/provider.ts). */
  modelTransfer?: TransferTestHooks
  /**
   * With 'always-wrong': a dispute trace that agrees with the lie (its graph outputs changed as the
   * job's were, every other node honest), so bisection has to find the last node.
   */
  disputeLie?: boolean
}

export interface TransferTestHooks {
  /** Return true to send chunk `index` of `cid` with one byte flipped. */
  corruptChunk?(cid: string, index: number): boolean
}

export type Misbehaviour = { kind: 'reply'; result: Executed } | { kind: 'hang' } | { kind: 'drop' }

/** A dispute trace made to agree with 'always-wrong': the model's own outputs changed as the job's are. */
export function lyingTrace(trace: NamedTensors, graphOutputs: readonly string[]): NamedTensors {
  const lied = perturb(Object.fromEntries(graphOutputs.filter((n) => trace[n]).map((n) => [n, trace[n]!])))
  return { ...trace, ...lied }
}

function perturb(outputs: NamedTensors): NamedTensors {
  const out: NamedTensors = {}
  for (const [name, t] of Object.entries(outputs)) {
    const data = t.data.slice() as typeof t.data
    if (data instanceof Float32Array) data[0] = (data[0] ?? 0) + 0.5
    out[name] = { ...t, data }
  }
  return out
}

export function createAdversary(hooks: TestHooks, key: ExecutorOptions['privateKey']) {
  let last: Executed | undefined

  /** Signs a receipt honestly over (possibly wrong) outputs: only a quorum can catch it. */
  async function resign(r: Executed, outputs: NamedTensors, model?: CID): Promise<Executed> {
    const body = { ...r.receipt.body, output: await tensorsCid(outputs), ...(model ? { model } : {}) }
    return { ...r, outputs, receipt: await signReceipt(body, key) }
  }

  return {
    active: () => hooks.adversary != null,

    /** Runs the job (or not) the way the current mode misbehaves. */
    async misbehave(
      req: CheckedJobRequest,
      run: (req: CheckedJobRequest) => Promise<Executed>,
    ): Promise<Misbehaviour> {
      const mode = hooks.adversary
      if (mode === 'never-answer') return { kind: 'hang' }
      if (mode === 'drop-connection') return { kind: 'drop' }
      if (mode === 'different-model' && hooks.otherModel) {
        const other = { ...req, body: { ...req.body, model: CID.parse(hooks.otherModel) } }
        const r = await run(other)
        return { kind: 'reply', result: await resign(r, r.outputs, req.body.model) }
      }
      const honest = await run(req)
      switch (mode) {
        case 'always-wrong':
          return { kind: 'reply', result: await resign(honest, perturb(honest.outputs)) }
        case 'wrong-10':
          return {
            kind: 'reply',
            result: Math.random() < 0.1 ? await resign(honest, perturb(honest.outputs)) : honest,
          }
        case 'forged-signature': {
          const sig = honest.receipt.sig.slice()
          sig[0] = (sig[0] ?? 0) ^ 0xff
          return { kind: 'reply', result: { ...honest, receipt: { ...honest.receipt, sig } } }
        }
        case 'replay': {
          const replayed = last ?? honest
          last = honest
          return { kind: 'reply', result: replayed }
        }
        case 'slow':
          await new Promise((r) => setTimeout(r, hooks.slowMs ?? 5000))
          return { kind: 'reply', result: honest }
        default:
          return { kind: 'reply', result: honest }
      }
    },
  }
}

export type Adversary = ReturnType<typeof createAdversary>
