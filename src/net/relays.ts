/** Where the relay is: `?relay=` on the page URL, else `peer-compute.json` served next to the page. */
export async function resolveRelays(pageUrl: string = location.href): Promise<string[]> {
  const fromQuery = new URL(pageUrl).searchParams.getAll('relay')
  if (fromQuery.length > 0) return fromQuery
  try {
    const res = await fetch(new URL('peer-compute.json', pageUrl), { cache: 'no-store' })
    if (!res.ok) return []
    const cfg = (await res.json()) as { relays?: unknown }
    return Array.isArray(cfg.relays) ? cfg.relays.filter((r): r is string => typeof r === 'string') : []
  } catch {
    return []
  }
}
