/** ICE server settings: the page's parser, and the server's minted coturn REST credentials. */
import { createHmac } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { configFor, iceConfigFromEnv, mintTurnCredential } from '../../node/relay/turn.ts'
import { isLoopbackPage, parseIceServers } from '../../src/net/config.ts'
import { forDatachannel } from '../../src/net/node.ts'

const PEER = '12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtN'

describe('ICE server config', () => {
  it('passes STUN and TURN entries through exactly as given', () => {
    const given = [
      { urls: 'stun:stun.example.com:3478' },
      {
        urls: ['turn:turn.example.com:3478?transport=udp', 'turns:turn.example.com:443'],
        username: 'u',
        credential: 'c',
      },
    ]
    expect(parseIceServers(given)).toEqual(given)
    expect(parseIceServers(undefined)).toEqual([])
  })

  it('refuses what is not an RTCIceServer list, saying why', () => {
    const bad: unknown[] = [
      'stun:x',
      [{ urls: 'http://x' }],
      [{ urls: [] }],
      [{ urls: 'turn:x:3478' }], // TURN without credentials
      [{ urls: 'stun:x', username: 5 }],
      Array.from({ length: 17 }, () => ({ urls: 'stun:x' })),
    ]
    for (const b of bad) expect(() => parseIceServers(b), JSON.stringify(b)).toThrow(/iceServers/)
  })

  it('knows a loopback page from one other peers reach over a network', () => {
    expect(isLoopbackPage('http://127.0.0.1:8080/')).toBe(true)
    expect(isLoopbackPage('http://localhost:8080/')).toBe(true)
    expect(isLoopbackPage('https://192.168.1.20:8443/')).toBe(false)
    expect(isLoopbackPage('https://compute.example.com/')).toBe(false)
  })
})

describe('minted TURN credentials (coturn use-auth-secret)', () => {
  const turn = { urls: ['turn:100.64.0.2:3478'], secret: 's3cret', ttlSeconds: 600 }

  it('names the peer and its expiry, signed with HMAC-SHA1 of the shared secret', () => {
    const now = 1_700_000_000_000
    const c = mintTurnCredential(turn, PEER, now)
    expect(c.username).toBe(`${now / 1000 + 600}:${PEER}`)
    expect(c.credential).toBe(createHmac('sha1', 's3cret').update(c.username).digest('base64'))
    expect(c.expiresAt).toBe(now + 600_000)
    expect(mintTurnCredential(turn, 'not a peer/../', now).username).toBe(`${now / 1000 + 600}:anon`)
  })

  it('adds minted and static servers to the served config, never the secret', () => {
    const cfg = configFor(
      { relays: ['/ip4/1.2.3.4/tcp/9090/ws/p2p/x'] },
      { servers: [{ urls: 'stun:s' }], turn },
      PEER,
    )
    expect(cfg.relays).toEqual(['/ip4/1.2.3.4/tcp/9090/ws/p2p/x'])
    expect(parseIceServers(cfg.iceServers)).toHaveLength(2)
    expect(cfg.iceServersExpireAt).toBeGreaterThan(Date.now())
    expect(JSON.stringify(cfg)).not.toContain('s3cret')
    expect(configFor({}, undefined)).toEqual({ relays: [] })
  })

  it('reads the settings from the environment, and refuses TURN without a secret', () => {
    expect(iceConfigFromEnv({})).toBeUndefined()
    expect(iceConfigFromEnv({ PC_STUN_URLS: 'stun:a stun:b' })).toEqual({
      servers: [{ urls: ['stun:a', 'stun:b'] }],
    })
    expect(() => iceConfigFromEnv({ PC_TURN_URLS: 'turn:a' })).toThrow(/PC_TURN_SECRET/)
    expect(() =>
      iceConfigFromEnv({ PC_TURN_URLS: 'turn:a', PC_TURN_SECRET: 'k', PC_TURN_TTL: '1d' }),
    ).toThrow(/PC_TURN_TTL/)
    expect(iceConfigFromEnv({ PC_TURN_URLS: 'turn:a', PC_TURN_SECRET: 'k' })?.turn?.urls).toEqual(['turn:a'])
  })
})

describe('ICE servers for node-datachannel', () => {
  it('percent-encodes TURN credentials, which it writes into the URL (libdatachannel decodes them)', () => {
    const turn = { urls: 'turn:turn.example:3478', username: '1796736863:12D3KooWabc', credential: 'a+b/c=' }
    const [t, s] = forDatachannel([turn, { urls: 'stun:stun.example:3478' }])
    expect(t).toEqual({ ...turn, username: '1796736863%3A12D3KooWabc', credential: 'a%2Bb%2Fc%3D' })
    expect(decodeURIComponent(t!.username as string)).toBe(turn.username)
    expect(s).toEqual({ urls: 'stun:stun.example:3478' })
  })
})
