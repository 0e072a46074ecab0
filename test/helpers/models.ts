/** Generated ONNX models for model-hub tests, served to one tab only (Playwright routes), never from dist/. */
import type { Page } from 'playwright-core'
import { mlpModelBytes } from '../../scripts/gen-models.ts'
import { modelCid } from '../../src/shared/cid.ts'
import type { MlpSpec } from '../../src/shared/mlp.ts'

export interface TestModel {
  spec: MlpSpec
  bytes: Uint8Array
  cid: string
  /** Path under the page's origin where `serveModels` answers with the bytes. */
  path: string
}

export async function testModel(name: string, spec: MlpSpec): Promise<TestModel> {
  const bytes = mlpModelBytes(spec)
  return { spec, bytes, cid: (await modelCid(bytes)).toString(), path: `/test-models/${name}.onnx` }
}

/** Makes `page` (and only it) able to download `models` by URL; other tabs get the static server's 404. */
export async function serveModels(page: Page, models: TestModel[], body?: (m: TestModel) => Uint8Array) {
  for (const m of models) {
    await page.route(`**${m.path}`, (route) =>
      route.fulfill({
        status: 200,
        body: Buffer.from(body ? body(m) : m.bytes),
        headers: { 'content-type': 'application/octet-stream' },
      }),
    )
  }
}

/** Imports a served model by URL in `page`; resolves with its CID. */
export const importUrl = (page: Page, m: TestModel) =>
  page.evaluate(async (path) => (await window.__peer.models.importUrl(path)).cid, m.path)
