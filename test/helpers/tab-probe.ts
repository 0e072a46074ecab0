/** Measures a tab from outside through CDP: its heap after GC, and how long it takes to answer. */
import type { Page } from 'playwright-core'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** The tab's JS heap plus ArrayBuffer backing stores (where received frames live), after a full GC. */
export async function heapAfterGc(page: Page): Promise<number> {
  const cdp = await page.context().newCDPSession(page)
  try {
    for (let i = 0; i < 2; i++) await cdp.send('HeapProfiler.collectGarbage')
    const u = (await cdp.send('Runtime.getHeapUsage')) as { usedSize: number; backingStorageSize?: number }
    return u.usedSize + (u.backingStorageSize ?? 0)
  } finally {
    await cdp.detach().catch(() => {})
  }
}

/**
 * Polls `heapAfterGc` each second until at or below `target`, or no longer falling (three readings
 * within 2 %), or `timeoutMs`; returns the last reading. A tab lets go of closed WebRTC streams over
 * seconds: after 4,000 of them one tab's heap fell 29 → 7 MB in 10 s.
 */
export async function settledHeap(page: Page, target = 0, timeoutMs = 20_000): Promise<number> {
  const until = Date.now() + timeoutMs
  const last: number[] = []
  for (;;) {
    const heap = await heapAfterGc(page)
    last.unshift(heap)
    const recent = last.slice(0, 3)
    const flat = recent.length === 3 && Math.max(...recent) - Math.min(...recent) < 0.02 * heap
    if (heap <= target || flat || Date.now() > until) return heap
    await sleep(1000)
  }
}

/** Times a round trip into `page` every 500 ms until the returned stop(), which resolves with the worst. */
export function sampleLag(page: Page): () => Promise<number> {
  let stop = false
  let worst = 0
  const done = (async () => {
    while (!stop) {
      const t = performance.now()
      await page.evaluate(() => 1).catch(() => {})
      worst = Math.max(worst, performance.now() - t)
      await sleep(500)
    }
    return Math.round(worst)
  })()
  return () => {
    stop = true
    return done
  }
}

/** `page`'s `/peer-compute/` streams with `peer`: protocol, status and age, for a report. */
export const peerStreams = (page: Page, peer: string) =>
  page.evaluate(
    (peer) =>
      window.__peer.node
        .getConnections()
        .filter((c) => c.remotePeer.toString() === peer)
        .flatMap((c) => c.streams)
        .filter((s) => s.protocol?.startsWith('/peer-compute/'))
        .map(
          (s) =>
            `${s.protocol} ${s.status}/${s.readStatus}/${s.writeStatus} ${Date.now() - s.timeline.open} ms`,
        ),
    peer,
  )

/**
 * Waits until `page` holds no `/peer-compute/` stream with `peer` (a refused stream lingers while its
 * close waits on the peer); resolves with how long that took, or throws naming what is left.
 */
export async function streamsGone(page: Page, peer: string, timeoutMs = 20_000): Promise<number> {
  const started = Date.now()
  for (;;) {
    const left = await peerStreams(page, peer)
    if (left.length === 0) return Date.now() - started
    if (Date.now() - started > timeoutMs)
      throw new Error(
        `${left.length} streams still open after ${timeoutMs} ms: ${left.slice(0, 4).join('; ')}`,
      )
    await sleep(250)
  }
}
