/**
 * The NAT lab itself, with the raw WebRTC API and no app code: homes reach the public host; plain
 * NAT joins over STUN, symmetric NAT only over TURN, and nothing joins without ICE servers.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { TestBrowser } from '../helpers/chromium.ts'
import { type Coturn, labPeerId, startCoturn } from '../helpers/coturn.ts'
import { type LabWeb, launchLabBrowser, startLabWeb } from '../helpers/lab-services.ts'
import { createLab, type Lab } from '../helpers/netlab.ts'

type Slots = Record<string, RTCPeerConnection | RTCDataChannel | undefined>

/** In a tab: a peer connection that offers (no `remote`) or answers; resolves with its SDP once gathering completes. */
const describeSide = async ({ key, ice, remote }: { key: string; ice: RTCIceServer[]; remote?: string }) => {
  const slots = globalThis as unknown as Slots
  const pc = new RTCPeerConnection({ iceServers: ice })
  slots[key] = pc
  if (remote) {
    pc.ondatachannel = (e) => {
      e.channel.onmessage = (m) => e.channel.send(`echo ${m.data}`)
    }
    await pc.setRemoteDescription({ type: 'offer', sdp: remote })
    await pc.setLocalDescription(await pc.createAnswer())
  } else {
    slots[`${key}-dc`] = pc.createDataChannel('lab')
    await pc.setLocalDescription(await pc.createOffer())
  }
  // No trickle: the SDP carries every candidate, so one exchange suffices.
  await new Promise<void>((ok) => {
    if (pc.iceGatheringState === 'complete') ok()
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && ok()
  })
  return pc.localDescription!.sdp
}

/** In the offering tab: waits up to `waitMs` for an echo over the data channel, then reads the selected pair. */
const outcome = async ({ key, answer, waitMs }: { key: string; answer: string; waitMs: number }) => {
  const slots = globalThis as unknown as Slots
  const pc = slots[key] as RTCPeerConnection
  const dc = slots[`${key}-dc`] as RTCDataChannel
  await pc.setRemoteDescription({ type: 'answer', sdp: answer })
  const echoed = await new Promise<boolean>((ok) => {
    setTimeout(() => ok(false), waitMs)
    dc.onopen = () => dc.send('ping')
    dc.onmessage = (m) => ok(m.data === 'echo ping')
  })
  const stats = [...(await pc.getStats()).values()]
  const transport = stats.find((s) => s.type === 'transport')
  const chosen = stats.find((s) => s.id === transport?.selectedCandidatePairId)
  const type = (id: string) => stats.find((s) => s.id === id)?.candidateType as string
  const pair = chosen && [type(chosen.localCandidateId), type(chosen.remoteCandidateId)]
  return { state: pc.connectionState, echoed, pair }
}

let n = 0
async function connect(a: Page, b: Page, ice: RTCIceServer[], waitMs = 10_000) {
  const key = `lab-pc-${n++}`
  const offer = await a.evaluate(describeSide, { key, ice })
  const answer = await b.evaluate(describeSide, { key, ice, remote: offer })
  return a.evaluate(outcome, { key, answer, waitMs })
}

describe('NAT lab', () => {
  let lab: Lab
  let turn: Coturn
  let web: LabWeb
  let browsers: TestBrowser[] = []
  let tabs: Page[] = []
  let root: string

  beforeAll(async () => {
    lab = await createLab({ homes: ['nat', 'nat', 'symmetric'] })
    root = mkdtempSync(join(tmpdir(), 'pc-lab-site-'))
    writeFileSync(
      join(root, 'index.html'),
      '<!doctype html><title>lab</title><p id="hello">hello from public</p>',
    )
    ;[turn, web] = await Promise.all([startCoturn(lab), startLabWeb(lab, { root })])
    browsers = await Promise.all(lab.homes.map((h) => launchLabBrowser(lab, h, { origins: [web.origin] })))
    tabs = await Promise.all(browsers.map((b) => b.newIsolatedPage()))
    await Promise.all(tabs.map((t) => t.goto(web.url)))
  })

  afterAll(async () => {
    await Promise.all(browsers.map((b) => b.close().catch(() => {})))
    await lab?.close()
    if (root) rmSync(root, { recursive: true, force: true })
  })

  it('is cut off from the host: every link pairs lab namespaces, and nothing routes out', () => {
    const names = new Set([lab.publicNs, lab.internetNs, ...lab.homes.flatMap((h) => [h.ns, h.router])])
    for (const ns of names) {
      const peers = [...lab.exec(ns, ['ip', '-o', 'link']).matchAll(/link-netns(id)? (\S+)/g)]
      for (const [, unnamed, peer] of peers) {
        expect(unnamed, `${ns} links to an unnamed namespace (the host's?)`).toBeUndefined()
        expect(names.has(peer!), `${ns} links to ${peer}`).toBe(true)
      }
    }
    // The top router has no default route: a packet for outside dies there.
    expect(() => lab.exec(lab.internetNs, ['ip', 'route', 'get', '192.0.2.1'])).toThrow(/unreachable/i)
    // And the host has no address of the lab's own (none of its links lead into the lab, as above).
    expect(execFileSync('ip', ['-o', 'addr'], { encoding: 'utf8' })).not.toContain(` ${lab.publicIp}/`)
  })

  it('serves a page from the public namespace to a home, as a secure context', async () => {
    const page = tabs[0]!
    expect(await page.textContent('#hello')).toBe('hello from public')
    expect(await page.evaluate(() => [location.origin, isSecureContext, !!crypto.subtle])).toEqual([
      web.origin,
      true,
      true,
    ])
  })

  it('joins two plain NAT homes over STUN (srflx)', async () => {
    const link = await connect(tabs[0]!, tabs[1]!, turn.iceServers({ turn: false }))
    expect(link).toMatchObject({ state: 'connected', echoed: true })
    for (const type of link.pair!) expect(['srflx', 'prflx']).toContain(type)
  })

  it('joins the symmetric NAT home only through TURN', async () => {
    const [stunOnly, withTurn] = await Promise.all([
      connect(tabs[0]!, tabs[2]!, turn.iceServers({ turn: false }), 5_000),
      connect(tabs[0]!, tabs[2]!, turn.iceServers({ peerId: labPeerId('home1') })),
    ])
    expect(stunOnly.echoed).toBe(false)
    expect(withTurn).toMatchObject({ state: 'connected', echoed: true })
    expect(withTurn.pair).toContain('relay')
    expect(
      turn.allocations().filter((u) => u.endsWith(`:${labPeerId('home1')}`)).length,
    ).toBeGreaterThanOrEqual(1)
  })

  it('refuses TURN credentials not minted with its secret', async () => {
    const forged = turn
      .iceServers({ stun: false, peerId: labPeerId('forger') })
      .map((s) => ({ ...s, credential: 'AAAA' }))
    const relayed = (ice: RTCIceServer[]) =>
      tabs[0]!.evaluate(async (ice) => {
        const pc = new RTCPeerConnection({ iceServers: ice, iceTransportPolicy: 'relay' })
        pc.createDataChannel('x')
        await pc.setLocalDescription(await pc.createOffer())
        await new Promise<void>((ok) => {
          if (pc.iceGatheringState === 'complete') ok()
          pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && ok()
        })
        pc.close()
        return / typ relay /.test(pc.localDescription!.sdp)
      }, ice)
    expect(await relayed(forged)).toBe(false)
    expect(await relayed(turn.iceServers({ stun: false, peerId: labPeerId('minted') }))).toBe(true)
    expect(turn.allocations().some((u) => u.endsWith(`:${labPeerId('forger')}`))).toBe(false)
  })

  it('does not join two homes without ICE servers', async () => {
    const link = await connect(tabs[0]!, tabs[1]!, [], 5_000)
    expect(link.echoed).toBe(false)
    expect(link.state).not.toBe('connected')
  })
})
