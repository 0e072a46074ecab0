/**
 * The app as a person sees it, in real Chromium: every view at a desktop and a phone width, key elements
 * visible and not overlapping, axe-core with no serious or critical violation, screenshots under
 * test/artifacts/, and the contributor and submit flows walked by role and label.
 */
import { resolve } from 'node:path'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ARTIFACTS, axeViolations } from '../helpers/axe.ts'
import { renderedText } from '../helpers/images.ts'
import { type Swarm, startSwarm, waitForContributors } from '../helpers/swarm.ts'

/** Each width in the light theme, and the phone width in the dark one too. */
const LOOKS = [
  { width: 1400, scheme: 'light' },
  { width: 400, scheme: 'light' },
  { width: 400, scheme: 'dark' },
] as const

/** What must be on screen in each view (by role and name where it has one). */
const KEY: Record<string, (p: Page) => ReturnType<Page['locator']>[]> = {
  contribute: (p) => [
    p.getByRole('checkbox', { name: /contribute this tab/i }),
    p.getByRole('heading', { name: 'Running now' }),
    p.getByRole('heading', { name: 'Totals' }),
  ],
  swarm: (p) => [p.locator('#swarm-totals'), p.getByRole('region', { name: 'Peers' })],
  submit: (p) => [
    p.getByLabel('Model', { exact: true }),
    p.getByRole('button', { name: 'Random input' }),
    p.getByRole('button', { name: 'Submit' }),
    p.locator('#policy-words'),
  ],
  tasks: (p) => [p.getByRole('tab', { name: /OCR/ }), p.getByRole('tab', { name: 'Voice activity' })],
  models: (p) => [p.getByRole('heading', { name: 'Models', exact: true })],
  verification: (p) => [p.getByRole('heading', { name: 'Verification', exact: true })],
  jobs: (p) => [p.getByRole('region', { name: 'Jobs' })],
}
const HEADER = (p: Page) => [p.locator('#peer-id'), p.locator('#relay-state'), p.locator('#engine')]

type Box = { x: number; y: number; width: number; height: number }
const overlap = (a: Box, b: Box) =>
  a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height

describe('the app in Chromium, view by view', () => {
  let swarm: Swarm
  let a: Page // contributes
  let b: Page // submits
  beforeAll(async () => {
    swarm = await startSwarm({ tabs: 2 })
    ;[a, b] = swarm.tabs as [Page, Page]
  }, 60_000)
  afterAll(() => swarm?.stop())

  it('opens on Contribute; the hash keeps the view across a reload; arrow keys move between tabs', async () => {
    expect(await a.getByRole('tab', { selected: true }).textContent()).toBe('Contribute')
    await a.getByRole('tab', { name: 'Jobs' }).click()
    expect(new URL(a.url()).hash).toBe('#jobs')
    await a.reload()
    await a.waitForSelector('body[data-ready="true"]')
    expect(await a.getByRole('tab', { selected: true }).textContent()).toBe('Jobs')
    expect(await a.getByRole('tabpanel').getAttribute('id')).toBe('view-jobs')
    await a.getByRole('tab', { name: 'Jobs' }).focus()
    await a.keyboard.press('ArrowLeft')
    expect(await a.getByRole('tab', { selected: true }).textContent()).toBe('Verification')
    await a.keyboard.press('Home')
    expect(await a.evaluate(() => document.activeElement?.textContent)).toBe('Contribute')
    expect(new URL(a.url()).hash).toBe('#contribute')
  }, 30_000)

  it('walks the contributor flow and the submit flow by role and label', async () => {
    await a.getByRole('tab', { name: 'Contribute' }).click()
    await a.getByRole('checkbox', { name: /contribute this tab/i }).check()
    await expect.poll(() => a.locator('#ctl-state').textContent()).toMatch(/^contributing/)
    await waitForContributors(b, [await a.evaluate(() => window.__peer.id)])

    await b.getByRole('tab', { name: 'Submit' }).click()
    const tiny = await b.evaluate(() => window.__peer.catalog.byName('mlp-tiny')!.cid)
    await b.getByLabel('Model', { exact: true }).selectOption(tiny)
    expect(await b.locator('#model-about').textContent()).toMatch(/Tiny MLP for tests.*3\.5 KiB/)
    await b.getByLabel('Replicas').fill('1')
    await b.getByLabel('Must agree').fill('1')
    expect(await b.locator('#policy-words').textContent()).toMatch(
      /one contributor’s answer is accepted alone/,
    )
    await b.getByRole('button', { name: 'Random input' }).click()
    await b.getByRole('button', { name: 'Submit' }).click()
    const result = b.locator('#submit-results li').first()
    await result.waitFor({ timeout: 30_000 })
    expect(await result.textContent()).toMatch(/mlp-tiny: verified by 1/)
    await expect.poll(() => b.locator('#submit-error').textContent()).toBe('1 verified')
    expect(await result.getByRole('button', { name: 'Download y.npy' }).isVisible()).toBe(true)

    await b.getByRole('tab', { name: 'Jobs' }).click()
    await expect.poll(() => b.locator('#jobs tbody tr').first().getAttribute('data-status')).toBe('verified')

    // the contributor's Contribute view counted the job it served, in its totals and its charts
    await expect.poll(() => a.locator('#ctl-totals').textContent()).toMatch(/Jobs served1/)
    const charts = a.locator('#contribute-charts figure')
    expect(await charts.count()).toBe(4)
    await expect
      .poll(() => charts.filter({ hasText: 'Jobs served per minute' }).textContent(), { timeout: 15_000 })
      .toMatch(/1 in the last minute/)
  }, 90_000)

  it('reads an image dropped on Tasks › OCR: plain text, confidence beside it, boxes over the image', async () => {
    const [png] = await renderedText(b, 'SIGNED RECEIPTS', {
      width: 700,
      height: 160,
      font: 'bold 56px sans-serif',
      x: 30,
    })
    // OCR's default policy needs two contributors to agree: a second one joins
    const c = await swarm.openTab()
    await c.evaluate(() => window.__peer.setContributing(true))
    await waitForContributors(b, await Promise.all([a, c].map((t) => t.evaluate(() => window.__peer.id))))
    await b.getByRole('tab', { name: 'Tasks' }).click()
    await b.getByRole('tab', { name: /OCR/ }).click()
    await b.getByLabel('choose image files').setInputFiles({
      name: 'receipt.png',
      mimeType: 'image/png',
      buffer: png!,
    })
    const table = b.getByRole('table', { name: 'Text in receipt.png' })
    await table.waitFor({ timeout: 90_000 }).catch(async (e) => {
      throw new Error(`${e.message}; the view says: ${await b.locator('#task-ocr output').textContent()}`)
    })
    const cells = await table.locator('tbody tr').first().locator('td').allTextContents()
    expect(cells[1]).toBe('SIGNED RECEIPTS') // the word gap kept (test/e2e/ocr-spaces.test.ts)
    expect(cells[2]).toMatch(/^\d+%/)
    expect(await b.getByRole('img', { name: /receipt\.png, text boxes numbered/ }).isVisible()).toBe(true)
    expect(await b.getByRole('button', { name: 'Copy text' }).isVisible()).toBe(true)
  }, 120_000)

  for (const { width, scheme } of LOOKS) {
    it(`every view at ${width} px, ${scheme}: key elements visible and apart, no serious axe violation`, async () => {
      await b.emulateMedia({ colorScheme: scheme })
      const problems: string[] = []
      for (const page of [a, b]) await page.setViewportSize({ width, height: 900 })
      for (const view of Object.keys(KEY)) {
        await b.getByRole('tab', { name: new RegExp(`^${view}$`, 'i') }).click()
        const els = [...HEADER(b), ...KEY[view]!(b)]
        const boxes: Box[] = []
        for (const el of els) {
          await el.first().waitFor({ state: 'visible', timeout: 5000 })
          const box = await el.first().boundingBox()
          if (!box || box.width === 0) problems.push(`${view}: ${el} has no box`)
          else boxes.push(box)
          if (box && box.x + box.width > width + 1)
            problems.push(`${view}: ${el} overflows the ${width} px page`)
        }
        for (let i = 0; i < boxes.length; i++)
          for (let j = i + 1; j < boxes.length; j++)
            if (overlap(boxes[i]!, boxes[j]!)) problems.push(`${view}: ${els[i]} overlaps ${els[j]}`)
        const scrollWidth = await b.evaluate(() => document.documentElement.scrollWidth)
        if (scrollWidth > width + 1) problems.push(`${view}: the page scrolls sideways (${scrollWidth} px)`)
        for (const v of await axeViolations(b)) problems.push(`${view}: ${v}`)
        await b.screenshot({ path: resolve(ARTIFACTS, `${view}-${width}-${scheme}.png`), fullPage: true })
      }
      expect(problems).toEqual([])
    }, 120_000)
  }
})
