/** axe-core in a real page, and where the UI tests put their screenshots (test/artifacts/, git-ignored). */
import { mkdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { resolve } from 'node:path'
import type { Page } from 'playwright-core'

export const ARTIFACTS = resolve(import.meta.dirname, '../artifacts')
mkdirSync(ARTIFACTS, { recursive: true })

const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js')

/** The page's serious and critical accessibility violations, one line each (rule, impact, elements). */
export async function axeViolations(page: Page): Promise<string[]> {
  if (!(await page.evaluate(() => 'axe' in window))) await page.addScriptTag({ path: AXE })
  return page.evaluate(async () => {
    type AxeViolation = { id: string; impact: string; nodes: { target: string[] }[] }
    const axe = (window as unknown as { axe: { run(o: object): Promise<{ violations: AxeViolation[] }> } })
      .axe
    const r = await axe.run({ resultTypes: ['violations'] })
    return r.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`)
  })
}
