/**
 * `peer-compute ocr <image…>`: the text in PNG and JPEG files, read by PP-OCRv4 on contributors
 * (src/tasks/ocr/pipeline.ts): one detection job per page, its lines fanned out as recognition jobs.
 */
import { writeFile } from 'node:fs/promises'
import { InvalidTensorError } from '../../src/shared/errors.ts'
import { loadDictionary } from '../../src/tasks/ocr/ctc.ts'
import { OCR_REC_MODEL, ocrImages } from '../../src/tasks/ocr/pipeline.ts'
import { peerSubmit } from '../../src/tasks/peer-tasks.ts'
import { PEER_HELP, peerOptions } from '../args.ts'
import { MAX_IMAGE_BYTES, probeImage, readBounded, readImage } from '../decode-image.ts'
import { createNodePeer } from '../peer.ts'
import { loadNodeAsset, settledConcurrency, taskArgs } from '../tasks.ts'
import { POLICY_HELP, watchSwarm } from './submit.ts'

export const OCR_HELP = `peer-compute ocr <image…> [flags]
Reads the text in PNG and JPEG images (up to 40 MP each) with PP-OCRv4 on contributors, and prints
each image's text, lines in reading order.

  --json                    print [{file, text, lines: [{text, score, box: {x, y, w, h}}]}]
  --out <file>              write that JSON to <file>
  -v, --verbose             say when contributors are seen and linked
${POLICY_HELP}
${PEER_HELP}`

/** Pages decoded and run together: their lines share one fan-out; memory stays bounded. */
const PAGES_PER_RUN = 8

export interface OcrFileResult {
  file: string
  text: string
  lines: { text: string; score: number; box: { x: number; y: number; w: number; h: number } }[]
}

export async function ocr(argv: string[], say: (line: string) => void): Promise<number> {
  const args = taskArgs(argv, OCR_HELP, say, 'ocr takes one or more images: peer-compute ocr <image…>')
  if (!args) return 0
  const { values, files, policy } = args
  // Every file is checked (size, format, pixels) before the swarm is joined; pages decode later, a run at a time.
  for (const f of files) {
    const bytes = await readBounded(f, MAX_IMAGE_BYTES)
    try {
      probeImage(bytes)
    } catch (err) {
      throw new InvalidTensorError(`${f}: ${(err as Error).message}`)
    }
  }
  const peer = await createNodePeer(await peerOptions(values))
  if (values.verbose) watchSwarm(peer, say)
  const results: OcrFileResult[] = []
  try {
    const keys = await loadNodeAsset(peer.catalog, peer.download, OCR_REC_MODEL, 'dictionary')
    const dictionary = loadDictionary(new TextDecoder().decode(keys))
    const concurrency = await settledConcurrency(peer)
    const submit = peerSubmit(peer, { policy })
    for (let i = 0; i < files.length; i += PAGES_PER_RUN) {
      const run = files.slice(i, i + PAGES_PER_RUN)
      const images = []
      for (const f of run) images.push(await readImage(f))
      const pages = await ocrImages(images, { submit, dictionary, concurrency })
      for (const [k, page] of pages.entries()) {
        const file = run[k]!
        results.push({
          file,
          text: page.text,
          lines: page.lines.map((l) => ({ text: l.text, score: l.score, box: l.box })),
        })
        if (values.json) continue
        if (files.length > 1) say(`==> ${file} <==`)
        say(page.text)
      }
    }
  } finally {
    await peer.stop()
  }
  const json = JSON.stringify(results)
  if (values.out) await writeFile(values.out, `${json}\n`)
  if (values.json) say(json)
  return 0
}
