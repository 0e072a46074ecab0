/**
 * Consent to contribute, remembered per site: localStorage belongs to the host page's origin, and in
 * the iframe form browsers partition it by top-level site. Revoking removes it.
 */
const KEY = 'peer-compute:consent'

export interface Consent {
  v: 1
  at: number
}

export function readConsent(): Consent | undefined {
  try {
    const c = JSON.parse(localStorage.getItem(KEY) ?? 'null') as Consent | null
    return c?.v === 1 && typeof c.at === 'number' ? c : undefined
  } catch {
    return undefined // storage blocked or junk: ask again
  }
}

export function grantConsent(): void {
  try {
    localStorage.setItem(KEY, JSON.stringify({ v: 1, at: Date.now() } satisfies Consent))
  } catch {
    // storage blocked: consent holds for this page only
  }
}

export function forgetConsent(): void {
  try {
    localStorage.removeItem(KEY)
  } catch {}
}
