/**
 * The default ORT thread count, in one place for the browser worker, the auto engine and the Node
 * engine: the cores each engine may use, at most 4 (more rarely pays on the models we run, and
 * leaves nothing to the page or other jobs).
 *
 * @example
 * threadCount({ cores: navigator.hardwareConcurrency, isolated: crossOriginIsolated }) // browser
 * threadCount({ cores: availableParallelism(), share: workers }) // Node, per worker thread
 */

export const MAX_DEFAULT_THREADS = 4

export interface ThreadBudget {
  /** Logical cores (navigator.hardwareConcurrency, os.availableParallelism()); 0 or unknown counts as 1. */
  cores: number | undefined
  /** WASM threads need cross-origin isolation (SharedArrayBuffer); without it, 1 (default true). */
  isolated?: boolean
  /** Engines that run at once and share the cores (default 1). */
  share?: number
}

export function threadCount({ cores, isolated = true, share = 1 }: ThreadBudget): number {
  if (!isolated) return 1
  const each = Math.floor((cores || 1) / Math.max(1, share))
  return Math.max(1, Math.min(MAX_DEFAULT_THREADS, each || 1))
}
