/**
 * `peer-compute map <model> <dir> --out <dir>`: one verified job per input file. Job ids come from the
 * model and the inputs' CID, so a re-run skips what is written and joins (through the journal) what
 * an interrupted run left in flight: each item is computed once.
 */
import { mkdir, readdir, rename, stat, writeFile } from 'node:fs/promises'
import { extname, join } from 'node:path'
import { parseArgs } from 'node:util'
import { InvalidOptionError } from '../../src/shared/errors.ts'
import { tensorsCid } from '../../src/shared/tensor-codec.ts'
import { writeNpy } from '../../src/tasks/npy.ts'
import { intFlag, PEER_FLAGS, PEER_HELP, peerOptions } from '../args.ts'
import { createNodePeer } from '../peer.ts'
import { createProgress } from '../progress.ts'
import { outputFile, POLICY_FLAGS, POLICY_HELP, policyFlags, readInputs, resolveModel } from './submit.ts'

export const MAP_HELP = `peer-compute map <model> <input dir> --out <dir> [flags]
Runs <model> once per .npy or .json file in <input dir> (a .npy file is the model's single input) and
writes <out>/<file name>/ with one .npy per output and record.cbor (check with peer-compute verify).
Re-running skips items already written and resumes those still in flight.

  --out <dir>               where results go (required)
  --concurrency <n>         jobs in flight at once (default 8)
${POLICY_HELP}
${PEER_HELP}`

/** The record is written last (by rename): an item is done exactly when its record exists. */
const RECORD = 'record.cbor'

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  )

export async function map(argv: string[], say: (line: string) => void): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { ...PEER_FLAGS, ...POLICY_FLAGS, out: { type: 'string' }, concurrency: { type: 'string' } },
  })
  if (values.help) {
    say(MAP_HELP)
    return 0
  }
  const [model, inDir] = positionals
  if (!model || !inDir || positionals.length > 2)
    throw new InvalidOptionError('usage: peer-compute map <model> <input dir> --out <dir>')
  if (!values.out) throw new InvalidOptionError('map needs --out <dir>')
  const out = values.out
  const concurrency = intFlag('concurrency', values.concurrency, 1, 256) ?? 8
  const policy = policyFlags(values)
  const files = (await readdir(inDir)).filter((f) => ['.npy', '.json'].includes(extname(f))).sort()
  if (files.length === 0) throw new InvalidOptionError(`${inDir} has no .npy or .json inputs`)
  const todo: string[] = []
  for (const f of files) if (!(await exists(join(out, f, RECORD)))) todo.push(f)
  say(`${files.length} items, ${files.length - todo.length} already done, ${todo.length} to run`)
  if (todo.length === 0) return 0

  const peer = await createNodePeer(await peerOptions(values))
  const failures: string[] = []
  try {
    const { cid, entry } = await resolveModel(peer, model)
    const progress = createProgress(todo.length, say)
    let next = 0
    const lane = async () => {
      while (next < todo.length) {
        const file = todo[next++]!
        try {
          const inputs = await readInputs(entry?.inputs, [join(inDir, file)], false)
          const key = `map-${cid.slice(-16)}-${(await tensorsCid(inputs)).toString()}`
          // A failed item is tried again as a new job; a verified or running one is joined.
          const before = await peer.job(key)
          const id =
            before && ['failed', 'inconclusive'].includes(before.status) ? `${key}-${Date.now()}` : key
          const r = await peer.submit(cid, inputs, { id, policy })
          const dir = join(out, file)
          const files = Object.entries(r.outputs).map(([name, t]) => [outputFile(dir, name), t] as const)
          await mkdir(dir, { recursive: true })
          for (const [file, t] of files) await writeFile(file, writeNpy(t))
          await writeFile(join(dir, `${RECORD}.tmp`), r.record)
          await rename(join(dir, `${RECORD}.tmp`), join(dir, RECORD))
          progress.tick(true)
        } catch (err) {
          failures.push(`${file}: ${(err as Error).name}: ${(err as Error).message}`)
          progress.tick(false)
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, todo.length) }, lane))
    progress.end()
  } finally {
    await peer.stop()
  }
  for (const f of failures) say(`failed ${f}`)
  return failures.length > 0 ? 1 : 0
}
