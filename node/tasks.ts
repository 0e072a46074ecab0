/**
 * What the task commands (`ocr`, `vad`) share: catalog assets read from `file:` or HTTP URLs, and a
 * fan-out sized to the contributors this requester has linked to.
 */
import { parseArgs } from 'node:util'
import type { Catalog } from '../src/models/catalog.ts'
import type { Download } from '../src/models/download.ts'
import type { Peer } from '../src/peer.ts'
import { modelCid } from '../src/shared/cid.ts'
import { InvalidOptionError, ModelIntegrityError, UnknownModelError } from '../src/shared/errors.ts'
import { swarmConcurrency } from '../src/tasks/peer-tasks.ts'
import { policyFlags, TASK_FLAGS } from './commands/submit.ts'

/**
 * The command line of a task command (ocr, vad): undefined after printing `help` for --help, else
 * its flags, files and verification policy; a usage error when no file is named.
 */
export function taskArgs(argv: string[], help: string, say: (line: string) => void, usage: string) {
  const { values, positionals: files } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: TASK_FLAGS,
  })
  if (values.help) {
    say(help)
    return undefined
  }
  if (files.length === 0) throw new InvalidOptionError(usage)
  return { values, files, policy: policyFlags(values) }
}

/** A model's named asset (src/tasks/peer-tasks.ts loadAsset, which only fetches), hash-checked. */
export async function loadNodeAsset(
  catalog: Catalog,
  download: Download,
  model: string,
  name: string,
): Promise<Uint8Array> {
  const entry = catalog.byName(model)
  const asset = entry?.assets?.find((a) => a.name === name)
  if (!entry || !asset) throw new UnknownModelError(`catalog has no ${name} for ${model}`)
  const bytes = await download(catalog.url({ ...entry, file: asset.file }), { maxBytes: asset.size })
  const cid = (await modelCid(bytes)).toString()
  if (cid !== asset.cid)
    throw new ModelIntegrityError(`${asset.file} hashes to ${cid}, expected ${asset.cid}`)
  return bytes
}

/**
 * Parts to keep in flight: waits (at most `maxMs`) until some contributor is linked and the linked
 * set has held still for `settleMs`, so a fresh requester does not size its fan-out to nobody.
 */
export async function settledConcurrency(peer: Peer, settleMs = 1500, maxMs = 15_000): Promise<number> {
  const t0 = performance.now()
  const linked = () => peer.peers().filter((p) => p.direct && p.advert.contributing)
  let last = ''
  let since = t0
  while (performance.now() - t0 < maxMs) {
    const now = linked()
      .map((p) => `${p.id}/${p.advert.maxSlots}`)
      .sort()
      .join()
    if (now !== last) {
      last = now
      since = performance.now()
    } else if (now !== '' && performance.now() - since >= settleMs) break
    await new Promise((r) => setTimeout(r, 100))
  }
  return swarmConcurrency(peer)
}
