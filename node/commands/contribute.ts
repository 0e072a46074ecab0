/** `peer-compute contribute`: serve jobs from this machine until SIGINT/SIGTERM, then hand running jobs back. */
import { rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { bytesFlag, intFlag, PEER_FLAGS, PEER_HELP, peerOptions } from '../args.ts'
import { chooseEp, parseEps } from '../ep.ts'
import { createNodePeer } from '../peer.ts'

export const CONTRIBUTE_HELP = `peer-compute contribute [flags]
Serves jobs to the swarm with onnxruntime-node, signs a receipt for each, and keeps a credit log.

${PEER_HELP}
  --slots <n>               jobs at once (default 1)
  --cache <size>            model cache quota, e.g. 2GiB
  --max-model <size>        largest model accepted, e.g. 512MiB
  --ep <list>               execution providers in order of preference: cpu (default), cuda,
                            webgpu, or auto (cuda, webgpu, cpu); the first that works is used`

/** The exported, signed credit log in the data directory. */
export const CREDIT_LOG_FILE = 'credit-log.json'

/** Longest wait for running jobs to be handed back at exit. */
const HAND_BACK_MS = 5000

type Values = Parameters<typeof peerOptions>[0] & {
  slots?: string
  cache?: string
  'max-model'?: string
  ep?: string
}

/** The contributing peer the flags describe, on the first EP asked for that works here. */
async function startPeer(values: Values, say: (line: string) => void) {
  const slots = intFlag('slots', values.slots, 1, 64)
  const cacheBytes = bytesFlag('cache', values.cache)
  const maxModelBytes = bytesFlag('max-model', values['max-model'])
  // Before joining: an EP that cannot run here is a line now, not a refused job later.
  const { ep, skipped } = await chooseEp(parseEps(values.ep) ?? ['cpu'])
  for (const why of skipped) say(`EP ${why}`)
  const peer = await createNodePeer({
    ep,
    ...(await peerOptions(values)),
    contribute: true,
    ...(slots ? { maxSlots: slots } : {}),
    ...(cacheBytes !== undefined ? { cacheBytes } : {}),
    ...(maxModelBytes !== undefined ? { maxModelBytes } : {}),
  })
  return { peer, ep }
}

export async function contribute(argv: string[], say: (line: string) => void): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...PEER_FLAGS,
      slots: { type: 'string' },
      cache: { type: 'string' },
      'max-model': { type: 'string' },
      ep: { type: 'string' },
    },
  })
  if (values.help) {
    say(CONTRIBUTE_HELP)
    return 0
  }
  const { peer, ep } = await startPeer(values, say)
  const s = peer.status()
  say(`contributing as ${peer.id} (data in ${peer.dir}), computing on ${ep}`)
  say(`relay ${s.relay}; ${s.iceServers} ICE servers${s.networkWarning ? `; ${s.networkWarning}` : ''}`)
  peer.controls.events.addEventListener('job-done', (e) => {
    const d = e.detail
    say(`job ${d.job.slice(-12)} ${d.ok ? `done in ${(d.runMs ?? 0).toFixed(1)} ms` : `refused (${d.code})`}`)
  })
  // The signed credit log beside the state, for `peer-compute verify`: rewritten after each job (at
  // most once a second) and at exit.
  const logFile = join(peer.dir, CREDIT_LOG_FILE)
  let writing: Promise<void> = Promise.resolve()
  let pending: ReturnType<typeof setTimeout> | undefined
  const writeLog = () => {
    writing = writing
      .then(async () => {
        const tmp = `${logFile}.tmp`
        await writeFile(tmp, await peer.credits.export())
        await rename(tmp, logFile)
      })
      .catch((err) => say(`credit log: ${(err as Error).message}`))
    return writing
  }
  peer.credits.events.addEventListener('change', () => {
    pending ??= setTimeout(() => {
      pending = undefined
      void writeLog()
    }, 1000)
  })
  let done!: () => void
  const stopped = new Promise<void>((r) => {
    done = r
  })
  const stop = async (signal: string) => {
    say(`${signal}: handing back ${peer.running().length} running jobs`)
    peer.controls.pause()
    for (const end = Date.now() + HAND_BACK_MS; peer.running().length > 0 && Date.now() < end; )
      await new Promise((r) => setTimeout(r, 50))
    clearTimeout(pending)
    await writeLog()
    await peer.stop()
    say(`stopped; credit log in ${logFile}`)
    done()
  }
  // A second signal does not wait for the worker processes to be ended and to release their sessions.
  let signals = 0
  const onSignal = (signal: string) => {
    if (signals++ === 0) void stop(signal)
    else process.kill(process.pid, 'SIGKILL')
  }
  process.on('SIGINT', () => onSignal('SIGINT'))
  process.on('SIGTERM', () => onSignal('SIGTERM'))
  await stopped
  return 0
}
