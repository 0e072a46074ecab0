/** `peer-compute submit`: one job, verified by a quorum of contributors; prints or writes outputs and the record. */

import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { parseArgs } from 'node:util'
import type { CatalogEntry } from '../../src/models/catalog.ts'
import { InvalidOptionError, InvalidTensorError } from '../../src/shared/errors.ts'
import type { NamedTensors } from '../../src/shared/tensor.ts'
import { readNpy, writeNpy } from '../../src/tasks/npy.ts'
import { parseJsonInputs, randomInputs, tensorsToJson } from '../../src/tasks/raw.ts'
import type { CompareRule, VerificationPolicy } from '../../src/trust/policy.ts'
import { encodeReceipt } from '../../src/trust/receipt.ts'
import { riskWords } from '../../src/trust/risk.ts'
import { intFlag, PEER_FLAGS, PEER_HELP, peerOptions } from '../args.ts'
import { createNodePeer, type NodePeer } from '../peer.ts'

export const POLICY_HELP = `  --redundancy <n>          replicas sent up front (1-5)
  --quorum <n>              agreeing replicas needed (1-redundancy)
  --compare <rule>          exact | tolerance:ATOL[:RTOL] | argmax | topk:K (default: the model's task)
  --no-adaptive             no single-replica shortcut for trusted contributors
  --no-dispute              buy more replicas on a 1-1 disagreement instead of settling it by dispute
  --trace-jobs              contributors keep each job's trace, so a dispute needs no second run
  --timeout <s>             whole-job deadline in seconds`

export const SUBMIT_HELP = `peer-compute submit <model> [--input name=file.npy | --input file.json | --random] [flags]
Runs <model> (a catalog name, a CID, or a local .onnx file offered to contributors peer to peer)
on contributors and prints the outputs once a quorum agrees.

  --input <name=file.npy>   one input tensor (repeat); or --input <file.json> with every input
  --random                  random inputs of the model's shapes (catalog models)
  --out <dir>               write outputs (.npy per output, outputs.json), record.cbor and receipt.cbor there
  --json                    print the outcome as JSON
  -v, --verbose             say when contributors are seen and linked
${POLICY_HELP}
${PEER_HELP}`

export const POLICY_FLAGS = {
  redundancy: { type: 'string' },
  quorum: { type: 'string' },
  compare: { type: 'string' },
  'no-adaptive': { type: 'boolean' },
  'no-dispute': { type: 'boolean' },
  'trace-jobs': { type: 'boolean' },
  timeout: { type: 'string' },
} as const

/** What submit, ocr and vad all take: where the swarm is, the policy, and how to report. */
export const TASK_FLAGS = {
  ...PEER_FLAGS,
  ...POLICY_FLAGS,
  json: { type: 'boolean' },
  out: { type: 'string' },
  verbose: { type: 'boolean', short: 'v' },
} as const

/** The policy the flags ask for (the rest from the model's task defaults). */
export function policyFlags(v: {
  redundancy?: string
  quorum?: string
  compare?: string
  'no-adaptive'?: boolean
  'no-dispute'?: boolean
  'trace-jobs'?: boolean
  timeout?: string
}): Partial<VerificationPolicy> {
  const p: Partial<VerificationPolicy> = {}
  const r = intFlag('redundancy', v.redundancy, 1, 5)
  if (r) p.redundancy = r
  const q = intFlag('quorum', v.quorum, 1, 5)
  if (q) p.quorum = q
  if (v.compare) p.compare = compareRule(v.compare)
  if (v['no-adaptive']) p.adaptive = false
  if (v['no-dispute']) p.dispute = false
  if (v['trace-jobs']) p.traceJobs = true
  const t = intFlag('timeout', v.timeout, 1, 86_400)
  if (t) p.deadlineMs = t * 1000
  return p
}

function compareRule(s: string): CompareRule {
  const [kind, a, b] = s.split(':')
  const num = (x: string | undefined, d: number) => {
    const n = x === undefined ? d : Number(x)
    if (!(n >= 0)) throw new InvalidOptionError(`--compare ${s}: ${x} is not a number ≥ 0`)
    return n
  }
  if (kind === 'exact') return { kind: 'exact' }
  if (kind === 'argmax') return { kind: 'argmax' }
  if (kind === 'topk') return { kind: 'topk', k: Math.max(1, Math.floor(num(a, 5))) }
  if (kind === 'tolerance') {
    const atol = num(a, 1e-4)
    return { kind: 'tolerance', atol, rtol: num(b, atol) }
  }
  throw new InvalidOptionError(`--compare must be exact, tolerance:ATOL[:RTOL], argmax or topk:K, got "${s}"`)
}

/**
 * Where an output tensor is written: its name comes from contributors (a single replica's, under
 * adaptive replication), so only a plain file name is accepted, never a path.
 */
export function outputFile(dir: string, name: string): string {
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(name) || /^\.+$/.test(name))
    throw new InvalidTensorError(
      `an output is named ${JSON.stringify(name.slice(0, 140))}: not a plain file name`,
    )
  return join(dir, `${name}.npy`)
}

/** Prints, with the time since start, each change in contributors seen and directly linked. */
export function watchSwarm(peer: NodePeer, say: (line: string) => void): void {
  const t0 = performance.now()
  let last = ''
  const report = () => {
    const ps = peer.peers().filter((p) => p.advert.contributing)
    const now = `${ps.length} contributors seen, ${ps.filter((p) => p.direct).length} linked`
    if (now === last) return
    last = now
    say(`+${Math.round(performance.now() - t0)} ms: ${now}`)
  }
  peer.events.addEventListener('peers', report)
  report()
}

/** The model's CID: a catalog entry's, or a local .onnx file's after importing it into the cache. */
export async function resolveModel(
  peer: NodePeer,
  model: string,
): Promise<{ cid: string; entry?: CatalogEntry }> {
  if (model.endsWith('.onnx')) {
    const bytes = new Uint8Array(await readFile(model))
    const info = await peer.models.importFile(bytes, { name: basename(model) })
    return { cid: info.cid }
  }
  const entry = peer.catalog.byName(model) ?? peer.catalog.byCid(model)
  return entry ? { cid: entry.cid, entry } : { cid: model }
}

export async function readInputs(
  specs: CatalogEntry['inputs'] | undefined,
  inputs: string[],
  random: boolean,
) {
  if (random) {
    if (!specs) throw new InvalidOptionError('--random needs a catalog model (its input shapes)')
    return randomInputs(specs)
  }
  if (inputs.length === 0)
    throw new InvalidOptionError('no inputs: pass --input name=file.npy, --input file.json or --random')
  const out: NamedTensors = {}
  for (const arg of inputs) {
    const eq = arg.indexOf('=')
    const [name, file] = eq > 0 ? [arg.slice(0, eq), arg.slice(eq + 1)] : [undefined, arg]
    const bytes = new Uint8Array(await readFile(file))
    if (file.endsWith('.npy')) {
      const only = specs?.length === 1 ? specs[0]!.name : undefined
      const key = name ?? only
      if (!key) throw new InvalidOptionError(`--input ${arg}: say which input, as name=${file}`)
      out[key] = readNpy(bytes)
    } else if (file.endsWith('.json')) {
      if (!specs) throw new InvalidTensorError(`--input ${arg}: JSON inputs need a catalog model; use .npy`)
      Object.assign(
        out,
        parseJsonInputs(new TextDecoder().decode(bytes), name ? specs.filter((s) => s.name === name) : specs),
      )
    } else throw new InvalidOptionError(`--input ${arg}: use a .npy or .json file`)
  }
  return out
}

export async function submit(argv: string[], say: (line: string) => void): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...PEER_FLAGS,
      ...POLICY_FLAGS,
      input: { type: 'string', multiple: true },
      random: { type: 'boolean' },
      out: { type: 'string' },
      json: { type: 'boolean' },
      verbose: { type: 'boolean', short: 'v' },
    },
  })
  if (values.help) {
    say(SUBMIT_HELP)
    return 0
  }
  const model = positionals[0]
  if (!model || positionals.length > 1)
    throw new InvalidOptionError('submit takes one model: peer-compute submit <model> …')
  const policy = policyFlags(values)
  const peer = await createNodePeer(await peerOptions(values))
  if (values.verbose) watchSwarm(peer, say)
  try {
    const { cid, entry } = await resolveModel(peer, model)
    const inputs = await readInputs(entry?.inputs, values.input ?? [], values.random ?? false)
    const outcome = await peer.submit(cid, inputs, { policy })
    if (values.out) {
      const out = values.out
      const files = Object.entries(outcome.outputs).map(([name, t]) => [outputFile(out, name), t] as const)
      await mkdir(out, { recursive: true })
      for (const [file, t] of files) await writeFile(file, writeNpy(t))
      await writeFile(join(values.out, 'outputs.json'), tensorsToJson(outcome.outputs))
      await writeFile(join(values.out, 'record.cbor'), outcome.record)
      await writeFile(join(values.out, 'receipt.cbor'), encodeReceipt(outcome.receipt))
    }
    const summary = {
      id: outcome.id,
      model: cid,
      workers: outcome.workers,
      attempts: outcome.attempts,
      ep: outcome.ep,
      roundTripMs: Math.round(outcome.roundTripMs),
      risk: outcome.risk,
    }
    if (values.json) say(JSON.stringify({ ...summary, outputs: JSON.parse(tensorsToJson(outcome.outputs)) }))
    else {
      say(
        `verified by ${outcome.workers.length} contributors (${outcome.attempts} sent) in ${summary.roundTripMs} ms; stated risk ${riskWords(outcome.risk)}`,
      )
      for (const w of outcome.workers) say(`  worker ${w}`)
      for (const [name, t] of Object.entries(outcome.outputs))
        say(
          `${name} ${t.dtype}[${t.dims.join(',')}]: ${Array.from(t.data.slice(0, 8) as ArrayLike<number | bigint>).join(' ')}${t.data.length > 8 ? ' …' : ''}`,
        )
      if (values.out) say(`wrote ${values.out}/ (outputs and record.cbor: check it with peer-compute verify)`)
    }
    return 0
  } finally {
    await peer.stop()
  }
}
