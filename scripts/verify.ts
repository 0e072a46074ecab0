/**
 * `npm run verify -- <file> [--quorum N]`: checks an exported record offline, with no network.
 * Kinds: quorum records (`peer-compute/quorum-record`, from the app's Export button) and credit logs
 * (`peer-compute/credit-log`, from the contributor panel's or the widget's Export credit log).
 * Exit status 0 when valid, 1 when not (the reason is printed), 2 on usage errors.
 */
import '../src/relay/polyfill.ts'
import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import * as dagCbor from '@ipld/dag-cbor'
import { CREDIT_LOG_KIND, verifyCreditLog } from '../src/trust/credit-log.ts'
import { QUORUM_RECORD_KIND, verifyQuorumRecord } from '../src/trust/quorum-record.ts'

type Verifier = (bytes: Uint8Array, opts: { quorum: number }) => Promise<string[]>

/** One entry per exportable kind; each returns the lines to print for a valid file. */
const VERIFIERS: Record<string, Verifier> = {
  [QUORUM_RECORD_KIND]: async (bytes, { quorum }) => {
    const r = await verifyQuorumRecord(bytes, quorum)
    return [
      `valid quorum record: ${r.workers.length} agreeing receipts, quorum ${r.quorum}`,
      `model ${r.model}`,
      `input ${r.input}`,
      `requester ${r.requester}`,
      ...r.workers.map((w, i) => `worker ${w} output ${r.outputs[i]}`),
    ]
  },
  [CREDIT_LOG_KIND]: async (bytes) => {
    const r = await verifyCreditLog(bytes)
    return [
      `valid credit log: ${r.count} signed receipts, credit ${r.credit}, run time ${(r.runUs / 1e6).toFixed(3)} s`,
      `head ${r.cid || '(empty)'}`,
      `exported by ${r.signer} at ${new Date(r.exportedAt).toISOString()}`,
      ...r.workers.map((w) => `worker ${w}`),
    ]
  },
}

const { values, positionals } = parseArgs({ allowPositionals: true, options: { quorum: { type: 'string' } } })
const file = positionals[0]
if (!file) {
  console.error('usage: npm run verify -- <file> [--quorum N]')
  process.exit(2)
}
const bytes = new Uint8Array(await readFile(file))
let kind: unknown
try {
  kind = (dagCbor.decode(bytes) as { kind?: unknown })?.kind
} catch {
  try {
    kind = JSON.parse(new TextDecoder().decode(bytes))?.kind
  } catch {
    kind = undefined
  }
}
const verify = typeof kind === 'string' ? VERIFIERS[kind] : undefined
if (!verify) {
  console.error(`INVALID: ${file} is not a known peer-compute record (kind ${String(kind)})`)
  process.exit(1)
}
try {
  for (const line of await verify(bytes, { quorum: Number(values.quorum ?? 1) })) console.log(line)
} catch (err) {
  console.error(`INVALID: ${(err as Error).name}: ${(err as Error).message}`)
  process.exit(1)
}
