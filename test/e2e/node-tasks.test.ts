/**
 * Task commands of the built CLI on browser contributors: `peer-compute ocr` reads text rendered in a
 * tab (PNG and JPEG), `peer-compute vad` finds espeak-ng speech placed between two silences.
 */

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { OcrFileResult } from '../../node/commands/ocr.ts'
import type { VadFileResult } from '../../node/commands/vad.ts'
import { runCli } from '../helpers/cli.ts'
import { compose, speak, writeWav } from '../helpers/espeak.ts'
import { renderedText } from '../helpers/images.ts'
import { peerId, type Swarm, startSwarm, waitForContributors } from '../helpers/swarm.ts'

const TEXT = 'PEER COMPUTE 2026'
const normalize = (s: string) => s.toUpperCase().replace(/\s+/g, '')

describe('ocr and vad from the CLI, computed by browser tabs', () => {
  let swarm: Swarm
  let dir: string
  /** Each run its own data directory (own PeerId), as two users would be. */
  const flags = (name: string) => ['--relay', swarm.relay.multiaddrs[0]!, '--dir', join(dir, name)]

  beforeAll(async () => {
    swarm = await startSwarm({ tabs: 2 })
    const ids = await Promise.all(swarm.tabs.map(peerId))
    for (const t of swarm.tabs) {
      // Tabs on two busy cores report critical CPU pressure, which would pause contributing.
      await t.evaluate(() => window.__peer.controls.update({ backOffUnderPressure: false }))
      await t.evaluate(() => window.__peer.setContributing(true))
    }
    await waitForContributors(swarm.tabs[0]!, [ids[1]!])
    await waitForContributors(swarm.tabs[1]!, [ids[0]!])
    dir = await mkdtemp(join(tmpdir(), 'pc-tasks-'))
  })

  afterAll(async () => {
    await swarm?.stop()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('ocr reads the text of a PNG and a JPEG rendered in a tab', async () => {
    const [png, jpeg] = await renderedText(
      swarm.tabs[0]!,
      TEXT,
      { width: 900, height: 200, font: 'bold 72px sans-serif', x: 40 },
      ['image/png', 'image/jpeg'],
    )
    const files = [join(dir, 'page.png'), join(dir, 'page.jpg')]
    await writeFile(files[0]!, png!)
    await writeFile(files[1]!, jpeg!)
    const out = join(dir, 'ocr.json')
    const t0 = performance.now()
    const r = await runCli(['ocr', ...files, '-v', '--out', out, ...flags('ocr')])
    console.log(
      `ocr of 2 images: ${(performance.now() - t0).toFixed(0)} ms (cold contributors): ${JSON.stringify(r.out)}`,
    )
    expect(r.code, r.err).toBe(0)
    expect(r.out.split('\n').filter((l) => normalize(l) === normalize(TEXT))).toHaveLength(2)
    const results = JSON.parse(await readFile(out, 'utf8')) as OcrFileResult[]
    expect(results.map((p) => p.file)).toEqual(files)
    for (const p of results) {
      expect(normalize(p.text)).toBe(normalize(TEXT))
      expect(p.lines.every((l) => l.score > 0.8 && l.box.w > 0 && l.box.h > 0)).toBe(true)
    }
  })

  it('vad finds the speech between one-second silences', async () => {
    // Voiced throughout: no stop-consonant gap long enough to split it (a "p" or "t" can).
    const speech = speak('A long morning in the garden')
    // Where the clip is audible (espeak pads a little silence of its own).
    const loud = speech.samples.map((v) => (Math.abs(v) > 0.02 ? 1 : 0))
    const from = loud.indexOf(1) / speech.rate
    const to = loud.lastIndexOf(1) / speech.rate
    const seconds = speech.samples.length / speech.rate
    const file = join(dir, 'speech.wav')
    await writeFile(file, writeWav(compose(speech.rate, 1 + seconds + 1, [{ at: 1, pcm: speech }])))
    const t0 = performance.now()
    const r = await runCli([
      'vad',
      file,
      '-v',
      '--json',
      '--redundancy',
      '2',
      '--quorum',
      '2',
      ...flags('vad'),
    ])
    console.log(
      `vad: ${(performance.now() - t0).toFixed(0)} ms: ${r.out.trim()} (speech ${(1 + from).toFixed(2)}–${(1 + to).toFixed(2)} s)`,
    )
    expect(r.code, r.err).toBe(0)
    const [result] = JSON.parse(r.out.trim().split('\n').at(-1)!) as VadFileResult[]
    expect(result!.file).toBe(file)
    expect(result!.segments).toHaveLength(1)
    const [s] = result!.segments
    expect(Math.abs(s!.start - (1 + from))).toBeLessThanOrEqual(0.3)
    expect(Math.abs(s!.end - (1 + to))).toBeLessThanOrEqual(0.3)
  })

  it('refuses inputs it cannot read before joining the swarm (exit 2)', async () => {
    const bad = join(dir, 'bad.wav')
    await writeFile(bad, 'not audio')
    const r = await runCli(['vad', bad, '--relay', '/ip4/127.0.0.1/tcp/1/ws'])
    expect(r.code).toBe(2)
    expect(r.err).toMatch(/InvalidTensorError: .*bad\.wav: not a WAV file/)
  })
})
