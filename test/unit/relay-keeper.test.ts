/**
 * Several relays, with Node peers over real WebSockets on 127.0.0.1: a client keeps reservations on
 * two of three relays and replaces a lost one within 5 s, and regains one on a relay that comes
 * back. And the relay's cap on connections per IP address.
 */
import '../../node/relay/polyfill.ts'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { createRelay, type Relay } from '../../node/relay/relay.ts'
import { keepRelays, type RelayKeeper } from '../../src/net/relays.ts'
import { relayClient } from '../helpers/relay-client.ts'

const client = () => relayClient({ reservations: true })
type Client = Awaited<ReturnType<typeof client>>

describe('relay keeper', () => {
  const relays: Relay[] = []
  const clients: Client[] = []
  const keepers: RelayKeeper[] = []
  afterEach(async () => {
    for (const k of keepers.splice(0)) k.stop()
    await Promise.allSettled(clients.splice(0).map((c) => c.stop()))
    await Promise.allSettled(relays.splice(0).map((r) => r.stop()))
  })

  const startRelay = async (key?: PrivateKey, port = 0, maxReservations?: number) => {
    const r = await createRelay({
      privateKey: key ?? (await generateKeyPair('Ed25519')),
      listen: [`/ip4/127.0.0.1/tcp/${port}/ws`],
      ...(maxReservations ? { maxReservations } : {}),
    })
    relays.push(r)
    return r
  }

  it('holds two reservations and replaces a lost relay within 5 s', async () => {
    const rs = [await startRelay(), await startRelay(), await startRelay()]
    const c = await client()
    clients.push(c)
    const k = keepRelays(
      c,
      rs.map((r) => r.multiaddrs[0]!),
    )
    keepers.push(k)
    await k.ready
    await vi.waitFor(() => expect(k.reserved()).toHaveLength(2), { timeout: 10_000, interval: 50 })
    const [gone] = k.reserved()
    const victim = rs.find((r) => r.node.peerId.toString() === gone)!
    const t0 = Date.now()
    await victim.stop()
    await vi.waitFor(
      () => {
        expect(k.reserved()).toHaveLength(2)
        expect(k.reserved()).not.toContain(gone)
      },
      { timeout: 5000, interval: 20 },
    )
    console.log(`re-reserved in ${Date.now() - t0} ms`)
  }, 30_000)

  it('regains a reservation on a relay that comes back', async () => {
    const key = await generateKeyPair('Ed25519')
    const r1 = await startRelay(key)
    const port = Number(r1.multiaddrs[0]!.split('/tcp/')[1]!.split('/')[0])
    const r2 = await startRelay()
    const c = await client()
    clients.push(c)
    const k = keepRelays(c, [r1.multiaddrs[0]!, r2.multiaddrs[0]!], { maxBackoffMs: 1000 })
    keepers.push(k)
    await vi.waitFor(() => expect(k.reserved()).toHaveLength(2), { timeout: 10_000, interval: 50 })
    await r1.stop()
    await vi.waitFor(() => expect(k.reserved()).toEqual([r2.node.peerId.toString()]), { timeout: 5000 })
    await new Promise((r) => setTimeout(r, 1500)) // a failed redial or two
    await startRelay(key, port)
    await vi.waitFor(() => expect(k.reserved()).toHaveLength(2), { timeout: 10_000, interval: 50 })
  }, 30_000)

  it('hangs up on a relay that refused it a reservation, and gets one there once it has room', async () => {
    // The relay is full (one reservation, held by `first`): the second client's connection stays
    // open with no reservation, and the circuit transport would never ask that relay again.
    const r = await startRelay(undefined, 0, 1)
    const [first, second] = [await client(), await client()]
    clients.push(first, second)
    const k1 = keepRelays(first, [r.multiaddrs[0]!], { want: 1 })
    keepers.push(k1)
    await vi.waitFor(() => expect(k1.reserved()).toHaveLength(1), { timeout: 10_000, interval: 50 })
    let opened = 0
    second.addEventListener('connection:open', () => opened++)
    const k2 = keepRelays(second, [r.multiaddrs[0]!], { want: 1, hangUpAfterMs: 2000, maxBackoffMs: 1000 })
    keepers.push(k2)
    await k2.ready
    // Refused, it hangs up after 2 s and redials 1 s later: a new connection asks again.
    await vi.waitFor(() => expect(opened).toBeGreaterThanOrEqual(3), { timeout: 10_000, interval: 50 })
    expect(k2.reserved()).toEqual([])
    // Room on the relay: its reservations outlive connections, so the test clears them.
    ;(r.node.services.relay as unknown as { reservationStore: { clear(): void } }).reservationStore.clear()
    const t0 = Date.now()
    await vi.waitFor(() => expect(k2.reserved()).toEqual([r.node.peerId.toString()]), {
      timeout: 10_000,
      interval: 50,
    })
    console.log(`reserved ${Date.now() - t0} ms after the relay had room`)
  }, 30_000)

  it('keeps a relay it is connected to but not reserved on while it holds enough, and reserves there when one goes', async () => {
    const [a, b] = [await startRelay(), await startRelay()]
    const c = await client()
    clients.push(c)
    const k = keepRelays(c, [a.multiaddrs[0]!], { want: 1, hangUpAfterMs: 1000 })
    keepers.push(k)
    await vi.waitFor(() => expect(k.reserved()).toEqual([a.node.peerId.toString()]), { timeout: 10_000 })
    k.stop()
    // Now keeping both: b is open (dialled for something else), a is reserved, so nothing is short.
    const bId = b.node.peerId.toString()
    let opened = 0
    c.addEventListener('connection:open', (e) => void (e.detail.remotePeer.toString() === bId && opened++))
    await c.dial(multiaddr(b.multiaddrs[0]!))
    const k2 = keepRelays(c, [a.multiaddrs[0]!, b.multiaddrs[0]!], { want: 1, hangUpAfterMs: 1000 })
    keepers.push(k2)
    await new Promise((ok) => setTimeout(ok, 2500))
    expect(opened).toBe(1)
    // a goes: b, open for seconds, gets its reservation over the same connection, not a hang-up.
    await a.stop()
    await vi.waitFor(() => expect(k2.reserved()).toEqual([bId]), { timeout: 10_000, interval: 50 })
    expect(opened).toBe(1)
  }, 30_000)

  it('refuses connections beyond --max-conns-per-ip from one address, except exempt ones', async () => {
    const key = await generateKeyPair('Ed25519')
    const capped = await createRelay({ privateKey: key, maxConnsPerIp: 2, exemptIps: ['10.0.0.0/8'] })
    relays.push(capped)
    const cs = [await client(), await client(), await client()]
    clients.push(...cs)
    const dial = (c: Client) =>
      c.dial(multiaddr(capped.multiaddrs[0]!), { signal: AbortSignal.timeout(5000) }).then(
        () => 'open',
        () => 'refused',
      )
    expect([await dial(cs[0]!), await dial(cs[1]!), await dial(cs[2]!)]).toEqual(['open', 'open', 'refused'])
    await cs[0]!.stop()
    await vi.waitFor(() => expect(capped.node.getConnections()).toHaveLength(1), { timeout: 5000 })
    expect(await dial(cs[2]!)).toBe('open') // a slot freed

    const exempt = await createRelay({ privateKey: await generateKeyPair('Ed25519'), maxConnsPerIp: 1 })
    relays.push(exempt) // loopback is exempt by default: a proxy on the same host
    for (const c of [cs[1]!, cs[2]!]) await c.dial(multiaddr(exempt.multiaddrs[0]!))
    await vi.waitFor(() => expect(exempt.node.getConnections()).toHaveLength(2), { timeout: 5000 })
  }, 30_000)
})
