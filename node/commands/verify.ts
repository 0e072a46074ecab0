/**
 * `peer-compute verify <file…>`: checks exported records offline, with no network. Kinds: quorum
 * records (`peer-compute/quorum-record`: the app's Export button, `submit --out`, `map`) and credit
 * logs (`peer-compute/credit-log`: the contributor panel, the widget, `contribute`'s data directory).
 */
import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import * as dagCbor from '@ipld/dag-cbor'
import { InvalidOptionError } from '../../src/shared/errors.ts'
import { CREDIT_LOG_KIND, verifyCreditLog } from '../../src/trust/credit-log.ts'
import { QUORUM_RECORD_KIND, verifyQuorumRecord } from '../../src/trust/quorum-record.ts'
import { decodeReceipt, verifyReceipt } from '../../src/trust/receipt.ts'

export const VERIFY_HELP = `peer-compute verify <file…> [--quorum N]
Checks quorum records, receipts and credit logs offline. Exit status 0 when all are valid, 1 when
one is not.

  --quorum <n>              a quorum record must carry at least n agreeing receipts (default 1)`

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

function kindOf(bytes: Uint8Array): unknown {
  try {
    return (dagCbor.decode(bytes) as { kind?: unknown })?.kind
  } catch {
    try {
      return JSON.parse(new TextDecoder().decode(bytes))?.kind
    } catch {
      return undefined
    }
  }
}

/** A signed receipt (one replica's, as the app stores it): it has no kind, only its shape. */
async function verifyReceiptFile(bytes: Uint8Array): Promise<string[]> {
  const r = await verifyReceipt(decodeReceipt(bytes))
  const b = r.body
  return [
    `valid receipt signed by worker ${b.worker}`,
    `job ${b.job}`,
    `model ${b.model}`,
    `input ${b.input}`,
    `output ${b.output}`,
    `requester ${b.requester}, ${b.ep} on ${b.adapter}, at ${new Date(b.ts).toISOString()}`,
  ]
}

const looksLikeReceipt = (bytes: Uint8Array) => {
  try {
    decodeReceipt(bytes)
    return true
  } catch {
    return false
  }
}

/** Lines for a valid file; throws with the reason for an invalid one. */
export async function verifyFile(file: string, quorum = 1): Promise<string[]> {
  const bytes = new Uint8Array(await readFile(file))
  const kind = kindOf(bytes)
  const verify = typeof kind === 'string' ? VERIFIERS[kind] : undefined
  if (verify) return verify(bytes, { quorum })
  if (kind === undefined && looksLikeReceipt(bytes)) return verifyReceiptFile(bytes)
  throw new Error(`${file} is not a known peer-compute record (kind ${String(kind)})`)
}

export async function verify(argv: string[], say: (line: string) => void, warn: (line: string) => void) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { quorum: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  })
  if (values.help) {
    say(VERIFY_HELP)
    return 0
  }
  if (positionals.length === 0) throw new InvalidOptionError('verify needs at least one file')
  const quorum = Number(values.quorum ?? 1)
  if (!Number.isSafeInteger(quorum) || quorum < 1)
    throw new InvalidOptionError('--quorum must be a whole number ≥ 1')
  let status = 0
  for (const file of positionals) {
    try {
      const lines = await verifyFile(file, quorum)
      say(`${file}: ${lines[0]}`)
      for (const line of lines.slice(1)) say(`  ${line}`)
    } catch (err) {
      warn(`INVALID: ${file}: ${(err as Error).name}: ${(err as Error).message}`)
      status = 1
    }
  }
  return status
}
