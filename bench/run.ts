/**
 * `npm run bench [-- --quick] [--only=dispatch,transport,throughput,verification,cold,engine,nat,dispute,scale] [--scale=50,100,200] [--no-build] [--out=dir] [--baseline=file]`
 * Builds the site with the bench page into PC_DIST (default dist/), starts a relay and headless
 * Chromium tabs, measures every section side by side, writes bench/results/<timestamp>.json and
 * prints markdown, the targets beside the committed baseline run (bench/results/baseline.json).
 * Figures never fail the run; only errors do.
 */
import '../node/relay/polyfill.ts'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { resolve } from 'node:path'
import { markdown, type Results } from './report.ts'

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const only = args
  .find((a) => a.startsWith('--only='))
  ?.slice(7)
  .split(',')
const want = (s: string) => !only || only.includes(s)
const ROOT = resolve(import.meta.dirname, '..')
const DIST = resolve(process.env.PC_DIST ?? resolve(ROOT, 'dist'))
process.env.PC_DIST = DIST // read by test/helpers/swarm.ts when it loads (imported below)

const t0 = Date.now()
const log = (s: string) => console.error(`[bench ${((Date.now() - t0) / 1000).toFixed(1)}s] ${s}`)
const results: Results = {
  meta: {
    date: new Date().toISOString(),
    quick,
    node: process.version,
    machine: `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')} at start`,
    gpu: 'no GPU on this machine: WebGPU figures are SwiftShader (CPU); no GPU machine was available to this run',
  },
}
const errors: string[] = []
const dir = resolve(args.find((a) => a.startsWith('--out='))?.slice(6) ?? resolve(ROOT, 'bench/results'))
const file = resolve(dir, `${results.meta.date as string}.json`.replace(/:/g, '-'))
/** Written after every section, so an interrupted run still leaves what it measured. */
function save(): void {
  results.meta.seconds = (Date.now() - t0) / 1000
  results.meta.loadAtEnd = loadavg()
  if (errors.length) results.meta.errors = errors
  mkdirSync(dir, { recursive: true })
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`)
}
async function section<T>(name: string, f: () => Promise<T>): Promise<T | undefined> {
  log(`${name}…`)
  try {
    return await f()
  } catch (err) {
    errors.push(`${name}: ${(err as Error).stack ?? err}`)
    log(`${name} failed: ${(err as Error).message}`)
    return undefined
  } finally {
    save()
  }
}

// The scale section runs Node peers only: it needs no build, and runs only when named (minutes of 2 cores).
const browser = ['dispatch', 'transport', 'throughput', 'verification', 'cold', 'engine', 'nat'].some(want)
if (!args.includes('--no-build') && browser) {
  log(`building into ${DIST}`)
  await (await import('./build.ts')).buildBench(DIST)
}

if (['dispatch', 'transport', 'throughput', 'verification'].some(want)) {
  const { swarmSections } = await import('./swarm-sections.ts')
  await section('swarm', () => swarmSections(results, { dist: DIST, quick, want, log, section }))
}
if (want('cold')) {
  const { coldStart } = await import('./cold-start.ts')
  results.coldStart = []
  for (let i = 0; i < (quick ? 1 : 3); i++) {
    const c = await section(`cold start ${i + 1}`, coldStart)
    if (c) results.coldStart.push(c)
  }
}
if (want('engine')) {
  const { engineSection } = await import('./engine-section.ts')
  await section('engine', () => engineSection(results, DIST, quick, log))
}
if (want('nat')) {
  const { natBench } = await import('./nat.ts')
  results.nat = await section('nat', () => natBench(DIST, quick, log))
}
if (want('dispute')) {
  // Node only, in process: no build needed.
  const { disputeBench } = await import('./dispute.ts')
  results.dispute = await section('dispute', () => disputeBench(quick, log))
}
if (only?.includes('scale')) {
  // `--scale=N,N…` picks the swarm sizes.
  const { scaleBench } = await import('./scale.ts')
  const sizes = args
    .find((a) => a.startsWith('--scale='))
    ?.slice(8)
    .split(',')
    .map(Number)
  results.scale = await section('scale', () =>
    scaleBench({
      sizes: sizes ?? (quick ? [20, 50] : [50, 100, 200]),
      budgetMs: (quick ? 5 : 9) * 60_000,
      idleMs: quick ? 15_000 : 30_000,
      jobsMs: quick ? 8000 : 20_000,
      log,
    }),
  )
}
save()
const baseFile = resolve(
  args.find((a) => a.startsWith('--baseline='))?.slice(11) ?? resolve(ROOT, 'bench/results/baseline.json'),
)
const base = existsSync(baseFile) ? (JSON.parse(readFileSync(baseFile, 'utf8')) as Results) : undefined
if (!base) log(`no baseline at ${baseFile}: the report compares with nothing`)
console.log(markdown(results, base))
log(`wrote ${file}`)
if (errors.length) {
  console.error(errors.join('\n'))
  process.exitCode = 1
}
// The scale section's requester leaves node-datachannel threads that keep Node alive (the CLI exits so too).
if (only?.includes('scale')) process.stdout.write('', () => process.exit())
