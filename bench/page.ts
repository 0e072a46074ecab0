/**
 * The bench page: a peer built through the public API (like an embedder would), plus a worker of
 * its own for local runs and helpers the driver calls through `window.__bench`.
 * Query: `peer=0` (no peer), `contribute=1`, `threads=<n>|auto` (the peer's engine; default 1),
 * `warm=0|1` (start its WASM runtime at once; default: when contributing).
 */
import { createInferenceBridge } from '../src/compute/bridge.ts'
import { createEngine } from '../src/compute/engine.ts'
import { createPeer, type Peer } from '../src/index.ts'
import {
  engineClose,
  engineFirst,
  engineMaxThreads,
  engineOpen,
  engineOpProfile,
  engineRounds,
  engineSustain,
} from './page-engine.ts'
import { jobsApi } from './page-jobs.ts'
import { installProbes, probes } from './page-probe.ts'
import * as transport from './page-transport.ts'

async function main() {
  const q = new URLSearchParams(location.search)
  installProbes() // before the peer exists, so its IndexedDB and crypto calls go through them
  const threads = q.get('threads') ?? '1'
  // This tab's own worker, for the "same job locally" side of every comparison: 1-thread WASM.
  const local = createInferenceBridge({ init: { numThreads: 1, allowWebGpu: false }, idleTimeoutMs: 0 })
  let peer: Peer | undefined
  if (q.get('peer') !== '0') {
    peer = await createPeer({
      configUrl: new URL('..', location.href).toString(), // relays and ICE servers: the site root's config
      contribute: q.get('contribute') === '1',
      catalogUrl: new URL('catalog.json', location.href).toString(),
      engine: createEngine({
        threads: threads === 'auto' ? 'auto' : Number(threads),
        allowWebGpu: false,
        warm: (q.get('warm') ?? q.get('contribute')) === '1',
      }),
    })
    // The bench measures what the swarm can do: a saturated 2-core machine would otherwise cap each
    // contributor at one job (the volunteer-friendly default), hiding the pipelining under test.
    if (q.get('contribute') === '1') await peer.controls.update({ backOffUnderPressure: false })
    await transport.registerBenchProtocols(peer.node)
    ;(window as unknown as { __peer: Peer }).__peer = peer
    document.getElementById('peer-id')!.textContent = peer.id
  }
  const node = () => peer!.node
  const api = {
    ...(peer ? jobsApi(peer, local) : undefined),
    engineMaxThreads,
    engineOpen,
    engineFirst,
    engineRounds,
    engineSustain,
    engineClose,
    engineOpProfile,
    probes,
    p2pSend: (target: string, total: number, msg: number) => transport.p2pSend(node(), target, total, msg),
    p2pEcho: (target: string, n: number, size?: number) => transport.p2pEcho(node(), target, n, size),
    rawOffer: transport.rawOffer,
    rawAnswer: transport.rawAnswer,
    rawConnect: transport.rawConnect,
    rawSend: transport.rawSend,
    rawEcho: transport.rawEcho,
    rawClose: transport.rawClose,
  }
  ;(window as unknown as { __bench: typeof api }).__bench = api
  return api
}

export type BenchApi = Awaited<ReturnType<typeof main>> & ReturnType<typeof jobsApi>

main().then(
  () => {
    document.body.dataset.ready = 'true'
  },
  (err: Error) => {
    document.getElementById('peer-id')!.textContent = `${err.name}: ${err.message}`
    document.body.dataset.ready = 'error'
  },
)
