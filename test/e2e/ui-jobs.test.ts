/**
 * The Jobs view and its detail drawer in real Chromium: a job computed by two peers (a contributing
 * tab and the requester's own worker, quorum 2) and one whose only replica timed out are listed with
 * their counts apart. The drawers, opened by role and closed (Close, Escape) back to the row's button,
 * show each replica's outcome, both receipts with signatures verified, and verify and export the
 * quorum record; axe-core finds no serious or critical violation with a drawer open, light and dark;
 * screenshots at 1400 and 400 px under test/artifacts/.
 */
import { resolve } from 'node:path'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ARTIFACTS, axeViolations } from '../helpers/axe.ts'
import { peerId, type Swarm, startSwarm, waitForContributors } from '../helpers/swarm.ts'

describe('Jobs view: a job in detail', () => {
  let swarm: Swarm
  let a: Page // contributes
  let b: Page // submits, and computes the second replica itself
  let job: string // verified
  let failed: string // its one replica timed out or was refused
  beforeAll(async () => {
    swarm = await startSwarm({ tabs: 2 })
    ;[a, b] = swarm.tabs as [Page, Page]
    await a.evaluate(() => window.__peer.setContributing(true))
    const idA = await peerId(a)
    await waitForContributors(b, [idA])
    ;[job, failed] = await b.evaluate(async (idA) => {
      const data = Float32Array.from({ length: 16 }, (_, i) => i / 16 - 0.5)
      const x = { x: { dtype: 'float32' as const, dims: [1, 16], data } }
      const ok = await window.__peer.submit('mlp-tiny', x, {
        policy: { redundancy: 2, quorum: 2, allowSelf: true, adaptive: false },
      })
      const id = crypto.randomUUID()
      await window.__peer.submit('mlp-tiny', x, { id, peer: idA, timeoutMs: 1 }).catch(() => {})
      return [ok.id, id]
    }, idA)
  }, 60_000)
  afterAll(() => swarm?.stop())

  it('lists the jobs with their counts apart and opens, checks and closes their drawers', async () => {
    const [idA, idB] = [await peerId(a), await peerId(b)]
    await b.getByRole('tab', { name: 'Jobs' }).click()
    const row = (id: string) => b.locator(`#jobs tbody tr[data-job="${id}"]`)
    const cells = (id: string) => row(id).locator('td').allTextContents()
    await expect.poll(() => row(job).getAttribute('data-status')).toBe('verified')
    await expect.poll(() => row(failed).getAttribute('data-status')).toBe('failed')
    // Submitted, Status, Sent, Refused, Disagreed, Failed, Busy retries, …
    expect((await cells(job)).slice(1, 7)).toEqual(['✓ verified: 2 agree', '2', '0', '0', '0', '0'])
    const f = await cells(failed)
    expect(f[1]).toMatch(/^✗ failed/)
    // A 1 ms deadline either expires here (1 sent, 1 failed) or reaches A late and A refuses it.
    const timedOut = f[5] === '1'
    expect(f.slice(2, 7)).toEqual(timedOut ? ['1', '0', '0', '1', '0'] : ['0', '1', '0', '0', '0'])
    expect(await b.locator('#jobs tbody tr').first().getAttribute('data-job')).toBe(failed) // newest first

    // The failed job: its replica's outcome and error in words; no receipts, no record. Close button.
    await row(failed)
      .getByRole('button', { name: /^mlp-tiny, .*: details$/ })
      .click()
    const drawer = b.getByRole('dialog', { name: 'mlp-tiny job' })
    await drawer.waitFor()
    const replicas = drawer.getByRole('region', { name: 'Replicas' })
    const only = replicas.locator('tbody tr')
    expect(await only.locator('td').nth(1).textContent()).toMatch(
      timedOut ? /^✗ timed out\w+Error: ./ : /^refused\w+Error: .*deadline/,
    )
    expect(await drawer.textContent()).toMatch(/Only a verified job has a quorum record/)
    for (const width of [400, 1400]) {
      await b.setViewportSize({ width, height: 900 })
      await b.screenshot({ path: resolve(ARTIFACTS, `jobs-drawer-failed-${width}.png`) })
    }
    await drawer.getByRole('button', { name: 'Close' }).click()
    await drawer.waitFor({ state: 'hidden' })
    const focusedJob = () => b.evaluate(() => (document.activeElement as HTMLElement | null)?.dataset.job)
    expect(await focusedJob()).toBe(failed)

    // The verified job, opened from the keyboard.
    await row(job).getByRole('button').focus()
    await b.keyboard.press('Enter')
    await drawer.waitFor()
    expect(await b.evaluate(() => document.activeElement?.textContent)).toBe('Close')
    for (const id of [idA, idB]) {
      const tr = replicas.locator('tbody tr', { has: b.locator(`code[title="${id}"]`) })
      expect(await tr.locator('td').nth(1).textContent()).toBe('✓ agreed')
      expect(await tr.locator('td').nth(4).textContent()).toMatch(/wasm|webgpu/)
    }
    expect(await replicas.locator(`tbody tr:has(code[title="${idB}"]) td`).first().textContent()).toMatch(
      /\(this tab\)$/,
    )
    const receipts = drawer.getByRole('region', { name: 'Receipts' })
    await expect
      .poll(() => receipts.locator('[data-sig]').allTextContents())
      .toEqual(['✓ signature verifies', '✓ signature verifies'])

    await drawer.getByRole('button', { name: 'Verify' }).click()
    await expect
      .poll(() => drawer.locator('output').textContent())
      .toMatch(/^✓ valid: 2 agreeing signed receipts \(quorum 2\)/)
    const [download] = await Promise.all([
      b.waitForEvent('download'),
      drawer.getByRole('button', { name: /^Export/ }).click(),
    ])
    expect(download.suggestedFilename()).toBe(`job-${job}.quorum.cbor`)
    expect(await drawer.textContent()).toMatch(/2 contributors must agree/)
    expect(await drawer.textContent()).toMatch(/2 at first, at most 6 in all.*may compute one replica itself/)
    expect(await drawer.getByRole('region', { name: 'Tensors' }).textContent()).toMatch(
      /inputxfloat321 × 16.*outputyfloat321 × 8/,
    )

    for (const scheme of ['light', 'dark'] as const) {
      await b.emulateMedia({ colorScheme: scheme })
      for (const width of [1400, 400]) {
        await b.setViewportSize({ width, height: 900 })
        expect(await axeViolations(b)).toEqual([])
        const box = await drawer.boundingBox()
        expect(box && box.x >= 0 && box.x + box.width <= width + 1).toBe(true)
        const name = `jobs-drawer-${width}${scheme === 'dark' ? '-dark' : ''}.png`
        await b.screenshot({ path: resolve(ARTIFACTS, name) })
      }
    }

    await b.keyboard.press('Escape')
    await drawer.waitFor({ state: 'hidden' })
    expect(await focusedJob()).toBe(job)
    await b.screenshot({ path: resolve(ARTIFACTS, 'jobs-list-400-dark.png') })
  }, 60_000)
})
