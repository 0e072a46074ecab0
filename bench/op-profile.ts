/**
 * onnxruntime's own profiler output (a JSON array of trace events, from the browser's stdout or
 * onnxruntime-node's file) as ms per op type per run: where a model's time goes on each side.
 */

export interface OpProfile {
  /** Runs averaged (the first, a warm-up, left out). */
  runs: number
  /** Mean ms per run of each op type's kernels. */
  msByOp: Record<string, number>
  /** Mean ms per run as ORT's own 'model_run' events say (kernels plus what lies between them). */
  runMs: number
}

interface TraceEvent {
  cat?: string
  name?: string
  ts?: number
  dur?: number
  args?: { op_name?: string }
}

/** Pulls the event array out of printed text: everything from the first '[' to the last ']'. */
export function eventsFromText(text: string): TraceEvent[] {
  const a = text.indexOf('[')
  const b = text.lastIndexOf(']')
  if (a < 0 || b < a) throw new Error('no profile (JSON event array) in the output')
  try {
    return JSON.parse(text.slice(a, b + 1).replace(/,\s*\]$/, ']')) as TraceEvent[]
  } catch (err) {
    // ORT writes node names unescaped: a quote or backslash in one breaks the JSON.
    throw new Error(`profile is not valid JSON: ${(err as Error).message}`)
  }
}

export function opProfile(events: TraceEvent[]): OpProfile {
  const runs = events
    .filter((e) => e.cat === 'Session' && e.name === 'model_run')
    .sort((x, y) => x.ts! - y.ts!)
  if (runs.length < 2) throw new Error(`profile has ${runs.length} runs; needs a warm-up and one more`)
  const from = runs[1]!.ts! // the warm-up run's kernels are left out
  const n = runs.length - 1
  const msByOp: Record<string, number> = {}
  for (const e of events) {
    const op = e.args?.op_name
    if (e.cat !== 'Node' || !op || !e.name?.endsWith('_kernel_time') || e.ts! < from) continue
    msByOp[op] = (msByOp[op] ?? 0) + e.dur! / 1000 / n
  }
  const runMs = runs.slice(1).reduce((s, e) => s + e.dur!, 0) / 1000 / n
  return { runs: n, msByOp, runMs }
}
