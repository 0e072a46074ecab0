/**
 * Discovery's links (src/net/discovery-links.ts, src/net/link.ts) over stub connections: a link is
 * direct only once the far side has answered over it, and one open on our side only is replaced.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Connection, PeerId } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { AdvertBody } from '../../src/net/advert.ts'
import { ALIVE_RETRY_MS, ALIVE_SILENCE_MS, advertised, type KnownPeer } from '../../src/net/advert-intake.ts'
import { createLinks, LINK_PROVE_MS, type Links, RETRY_BASE_MS } from '../../src/net/discovery-links.ts'
import { isDirect, markProven } from '../../src/net/link.ts'
import { linkPlanDefaults } from '../../src/net/link-plan.ts'
import type { BrowserNode } from '../../src/net/node.ts'

const newPeerId = async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))

/** An RTCPeerConnection as far as the links read it: states, events, an SCTP transport. */
function stubPc() {
  const sctp = Object.assign(new EventTarget(), { state: 'connected' as RTCSctpTransportState })
  return Object.assign(new EventTarget(), {
    connectionState: 'connected' as RTCPeerConnectionState,
    sctp,
    getStats: async () => new Map(),
  })
}

/** A WebRTC connection as libp2p's answering side holds it (`/webrtc/p2p/<peer>`). */
function stubLink(remote: PeerId) {
  const pc = stubPc()
  const conn = {
    remotePeer: remote,
    remoteAddr: multiaddr(`/webrtc/p2p/${remote}`),
    direction: 'inbound',
    status: 'open',
    streams: [],
    maConn: { peerConnection: pc },
    abort: vi.fn((_err: Error) => {
      conn.status = 'closed'
    }),
    close: vi.fn(async () => {
      conn.status = 'closed'
    }),
  }
  return { pc, conn, link: conn as unknown as Connection }
}

describe('isDirect', () => {
  it('counts a connected WebRTC link only once the far side has answered over it', async () => {
    const { pc, link } = stubLink(await newPeerId())
    expect(isDirect(link)).toBe(false)
    markProven(link)
    expect(isDirect(link)).toBe(true)
    pc.sctp.state = 'closed' // the far side closed its end
    expect(isDirect(link)).toBe(false)
  })
})

describe('links', () => {
  let links: Links
  let peers: Map<string, KnownPeer>
  let dial: ReturnType<typeof vi.fn>
  let identifyAgain: ReturnType<typeof vi.fn>
  let conns: Connection[]
  let remote: PeerId

  beforeEach(async () => {
    vi.useFakeTimers()
    remote = await newPeerId()
    const self = await newPeerId()
    conns = []
    dial = vi.fn(async () => {
      throw new Error('no relay in a unit test')
    })
    // The far side answers no second identify unless a test says so.
    identifyAgain = vi.fn(async () => {
      throw new Error('no answer')
    })
    const node = {
      peerId: self,
      getConnections: (p?: PeerId) => conns.filter((c) => p == null || c.remotePeer.equals(p)),
      dial,
      services: { identify: { identify: identifyAgain } },
    } as unknown as BrowserNode
    const addr = `/ip4/127.0.0.1/tcp/1/ws/p2p/${self}/p2p-circuit/webrtc/p2p/${remote}`
    const advert = { contributing: true, eps: ['wasm'], slots: 1, models: [], addrs: [addr] }
    peers = new Map([
      [
        remote.toString(),
        {
          id: remote.toString(),
          advert: advert as unknown as AdvertBody,
          seenAt: 0,
          firstSeenAt: 0,
          direct: false,
        },
      ],
    ])
    links = createLinks({
      node,
      log: Object.assign(() => {}, { error: () => {}, trace: () => {}, enabled: false }) as never,
      peers,
      isBlocked: () => false,
      changed: () => {},
      grace: 0,
      budget: linkPlanDefaults(),
    })
  })
  afterEach(() => {
    links.stop()
    vi.useRealTimers()
  })

  it('closes a link nothing was answered over, then dials the peer again', async () => {
    const { conn, link } = stubLink(remote)
    conns.push(link)
    links.watch(link)
    links.refresh(remote.toString())
    expect(peers.get(remote.toString())?.direct).toBe(false)
    await vi.advanceTimersByTimeAsync(LINK_PROVE_MS - 1)
    expect(conn.abort).not.toHaveBeenCalled()
    await vi.advanceTimersByTimeAsync(1)
    expect(conn.abort).toHaveBeenCalledOnce()
    expect(conn.abort.mock.calls[0]![0].message).toMatch(/nothing answered/)
    expect(peers.get(remote.toString())?.linkError).toMatch(/nothing answered/)
    await vi.advanceTimersByTimeAsync(1000)
    expect(dial).toHaveBeenCalled()
    expect(String(dial.mock.calls[0]![0])).toContain(`/p2p-circuit/webrtc/p2p/${remote}`)
  })

  it('asks identify once more before closing, and keeps a link answered then (a slow TURN path)', async () => {
    const { conn, link } = stubLink(remote)
    conns.push(link)
    identifyAgain.mockImplementationOnce(async () => ({}) as never)
    links.watch(link)
    await vi.advanceTimersByTimeAsync(LINK_PROVE_MS)
    expect(identifyAgain).toHaveBeenCalledWith(link, expect.objectContaining({ signal: expect.anything() }))
    expect(conn.abort).not.toHaveBeenCalled()
    expect(peers.get(remote.toString())?.direct).toBe(true)
    await vi.advanceTimersByTimeAsync(3 * LINK_PROVE_MS)
    expect(conn.abort).not.toHaveBeenCalled()
  })

  it('keeps a link once identify has been answered over it', async () => {
    const { conn, link } = stubLink(remote)
    conns.push(link)
    links.watch(link)
    markProven(link)
    links.refresh(remote.toString())
    expect(peers.get(remote.toString())?.direct).toBe(true)
    await vi.advanceTimersByTimeAsync(3 * LINK_PROVE_MS)
    expect(conn.abort).not.toHaveBeenCalled()
    expect(dial).not.toHaveBeenCalled()
  })

  it('closes a link at once when the far side closes its SCTP association', async () => {
    const { pc, conn, link } = stubLink(remote)
    conns.push(link)
    links.watch(link)
    markProven(link)
    pc.sctp.state = 'closed'
    pc.sctp.dispatchEvent(new Event('statechange'))
    expect(conn.abort).toHaveBeenCalledOnce()
    expect(conn.abort.mock.calls[0]![0].message).toMatch(/far side closed/)
    expect(peers.get(remote.toString())?.direct).toBe(false)
  })

  it('says a contributor has no path only after a second failed dial, tried at once', async () => {
    links.plan()
    await vi.advanceTimersByTimeAsync(0)
    expect(dial).toHaveBeenCalledOnce()
    // One timed-out dial is not yet "unreachable": a job would fail on it at once.
    expect({ error: peers.get(remote.toString())?.linkError, noPath: links.noPath() }).toEqual({
      error: 'no relay in a unit test',
      noPath: undefined,
    })
    await vi.advanceTimersByTimeAsync(300) // the next plan, not the next advert or tick
    expect(dial).toHaveBeenCalledTimes(2)
    expect(links.noPath()).toMatch(/^no direct path to any of 1 contributor\(s\): no relay in a unit test/)
    // A link that connects clears the count: one later failure is again only one.
    const { link } = stubLink(remote)
    markProven(link)
    conns.push(link)
    links.refresh(remote.toString())
    conns.length = 0
    links.refresh(remote.toString())
    expect(peers.get(remote.toString())?.linkFailures).toBeUndefined()
  })

  it('after the second failure, plans wait out a doubling retry: a gone peer is not a relay request a plan', async () => {
    const plans = async (ms: number) => {
      for (let t = 0; t < ms; t += 250) {
        links.plan()
        await vi.advanceTimersByTimeAsync(250)
      }
    }
    links.plan()
    await vi.advanceTimersByTimeAsync(300) // the first failure is tried again at once
    expect(dial).toHaveBeenCalledTimes(2)
    await plans(RETRY_BASE_MS - 250)
    expect(dial).toHaveBeenCalledTimes(2)
    await plans(500)
    expect(dial).toHaveBeenCalledTimes(3)
    await plans(2 * RETRY_BASE_MS - 500)
    expect(dial).toHaveBeenCalledTimes(3)
    await plans(750)
    expect(dial).toHaveBeenCalledTimes(4)
    expect(peers.get(remote.toString())?.linkFailures).toBe(4)
    // The fourth failure waits 8 s. A newer advert within seconds of the last (a busy peer's slots)
    // leaves it; one after a silence (its peer back, the relay restarted) cuts it to ALIVE_RETRY_MS.
    const known = peers.get(remote.toString())!
    const wait = known.retryAt! - Date.now()
    expect(wait).toBeGreaterThan(ALIVE_RETRY_MS)
    const seen = (at: number) => ({ ...known, seenAt: at, advert: { ...known.advert, ts: 1, seq: 1 } })
    const newer = { ...known.advert, ts: 2, seq: 2 }
    const now = Date.now()
    expect(advertised(seen(now - 1000), newer, now)!.retryAt).toBe(known.retryAt)
    expect(advertised(seen(now - ALIVE_SILENCE_MS), newer, now)!.retryAt).toBe(now + ALIVE_RETRY_MS)
  })
})
