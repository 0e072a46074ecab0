/** The relay's flags and environment variables (node/relay/config.ts), and its addr-file. */
import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { writeAddrFile } from '../../node/relay/addr-file.ts'
import { parseRelayArgs, RELAY_DEFAULTS, RELAY_HELP, type RelayConfig } from '../../node/relay/config.ts'
import { serveConfig } from '../../node/relay/config-http.ts'

const ID = '12D3KooWHxXkU4WCKSr2kN9E66uyj58ru5dc8gRyTtRmExGuUwUh'
const ID2 = '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK'
const cfg = (argv: string[], env: Record<string, string> = {}): RelayConfig => {
  const r = parseRelayArgs(argv, env)
  if (r.help) throw new Error('help')
  return r.config
}

describe('relay flags', () => {
  it('defaults: 127.0.0.1:9090 over ws, the documented limits', () => {
    expect(cfg([])).toEqual({
      listen: ['/ip4/127.0.0.1/tcp/9090/ws'],
      announce: [],
      keyFile: '.relay/key',
      addrFile: '.relay/relay.json',
      peers: [],
      maxReservations: 1024,
      maxConnsPerIp: 64,
      exemptIps: ['127.0.0.0/8', '::1/128'],
      advertRate: 60,
    })
    expect(RELAY_DEFAULTS.maxReservations).toBe(1024)
  })

  it('--listen takes host:port, [v6]:port, :port and /ws multiaddrs, repeated', () => {
    const c = cfg(['--listen', '0.0.0.0:9090', '--listen', '[::]:9091', '--listen', ':9092'])
    expect(c.listen).toEqual(['/ip4/0.0.0.0/tcp/9090/ws', '/ip6/::/tcp/9091/ws', '/ip4/0.0.0.0/tcp/9092/ws'])
    expect(cfg(['--listen', '/ip4/10.0.0.1/tcp/80/ws']).listen).toEqual(['/ip4/10.0.0.1/tcp/80/ws'])
    expect(() => cfg(['--listen', '/ip4/1.2.3.4/tcp/443/tls/ws'])).toThrow(/plain \/ws/)
    expect(() => cfg(['--listen', 'relay.example.com:9090'])).toThrow(/IP address/)
    expect(() => cfg(['--listen', '9090'])).toThrow(/host:port/)
  })

  it('--host/--port stay as a shorthand; a flag wins over its variable', () => {
    expect(cfg(['--port', '0']).listen).toEqual(['/ip4/127.0.0.1/tcp/0/ws'])
    expect(cfg([], { RELAY_PORT: '9999' }).listen).toEqual(['/ip4/127.0.0.1/tcp/9999/ws'])
    expect(cfg(['--listen', '1.2.3.4:1'], { RELAY_LISTEN: '5.6.7.8:2' }).listen).toEqual([
      '/ip4/1.2.3.4/tcp/1/ws',
    ])
    expect(cfg(['--advert-rate', '5'], { RELAY_ADVERT_RATE: '7' }).advertRate).toBe(5)
  })

  it('--announce takes multiaddrs and ws(s) URLs; the env takes lists', () => {
    const c = cfg([], {
      RELAY_LISTEN: '0.0.0.0:9090, [::]:9090',
      RELAY_ANNOUNCE: '/dns4/relay.example.com/tcp/443/wss wss://r2.example.com:8443 ws://203.0.113.7',
      RELAY_PEERS: `/dns4/r2.example.com/tcp/443/wss/p2p/${ID}`,
      RELAY_KEY_FILE: '/var/lib/relay/key',
      RELAY_ADDR_FILE: '/srv/site/peer-compute.json',
      RELAY_MAX_RESERVATIONS: '10',
      RELAY_MAX_CONNS_PER_IP: '3',
      RELAY_EXEMPT_IPS: '10.0.0.0/8,fd00::/8',
      RELAY_ADVERT_RATE: '30',
    })
    expect(c).toEqual({
      listen: ['/ip4/0.0.0.0/tcp/9090/ws', '/ip6/::/tcp/9090/ws'],
      announce: [
        '/dns4/relay.example.com/tcp/443/wss',
        '/dns/r2.example.com/tcp/8443/tls/ws',
        '/ip4/203.0.113.7/tcp/80/ws',
      ],
      keyFile: '/var/lib/relay/key',
      addrFile: '/srv/site/peer-compute.json',
      peers: [`/dns4/r2.example.com/tcp/443/wss/p2p/${ID}`],
      maxReservations: 10,
      maxConnsPerIp: 3,
      exemptIps: ['10.0.0.0/8', 'fd00::/8'],
      advertRate: 30,
    })
  })

  it('refuses what it cannot use, saying which flag', () => {
    expect(() => cfg(['--peer', '/ip4/1.2.3.4/tcp/1/ws'])).toThrow(/--peer .*\/p2p\//)
    expect(() => cfg(['--max-reservations', '0'])).toThrow(/max-reservations must be a positive integer/)
    expect(() => cfg(['--advert-rate', '1.5'])).toThrow(/advert-rate/)
    expect(() => cfg(['--exempt-ip', '10.0.0.0/33'])).toThrow(/--exempt-ip/)
    expect(() => cfg(['--announce', 'https://x.example'])).toThrow(/--announce/)
    expect(() => cfg(['--bogus'])).toThrow(/bogus/)
    for (const e of [() => cfg(['--max-conns-per-ip', 'x'])])
      expect(e).toThrow(expect.objectContaining({ name: 'InvalidOptionError' }))
  })

  it('--help names every flag and its variable', () => {
    expect(parseRelayArgs(['--help'])).toEqual({ help: true })
    expect(parseRelayArgs(['-h'])).toEqual({ help: true })
    for (const flag of [
      'listen',
      'announce',
      'key-file',
      'addr-file',
      'peer',
      'max-reservations',
      'max-conns-per-ip',
      'exempt-ip',
      'advert-rate',
    ]) {
      expect(RELAY_HELP).toContain(`--${flag}`)
      expect(RELAY_HELP).toContain(
        `RELAY_${flag
          .toUpperCase()
          .replaceAll('-', '_')
          .replace(/^PEER$/, 'PEERS')
          .replace(/^EXEMPT_IP$/, 'EXEMPT_IPS')}`,
      )
    }
  })
})

describe('relay addr-file', () => {
  it('writes the announced addresses, keeping other keys and other relays', async () => {
    const file = join(await mkdtemp(join(tmpdir(), 'pc-addr-')), 'sub', 'peer-compute.json')
    await writeAddrFile(file, [`/dns4/a.example/tcp/443/wss/p2p/${ID}`])
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({
      relays: [`/dns4/a.example/tcp/443/wss/p2p/${ID}`],
    })
    const ice = [{ urls: 'stun:stun.example:3478' }]
    await writeFile(
      file,
      JSON.stringify({
        relays: [`/dns4/old.example/tcp/443/wss/p2p/${ID}`, `/dns4/b.example/tcp/443/wss/p2p/${ID2}`],
        iceServers: ice,
      }),
    )
    await writeAddrFile(file, [`/dns4/a.example/tcp/443/wss/p2p/${ID}`])
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({
      relays: [`/dns4/a.example/tcp/443/wss/p2p/${ID}`, `/dns4/b.example/tcp/443/wss/p2p/${ID2}`],
      iceServers: ice,
    })
  })
})

describe('relay --http', () => {
  it('parses IP:port', () => {
    expect(cfg(['--http', '127.0.0.1:9091']).http).toEqual({ host: '127.0.0.1', port: 9091 })
    expect(cfg([], { RELAY_HTTP: '[::1]:80' }).http).toEqual({ host: '::1', port: 80 })
    expect(() => cfg(['--http', 'example.com:80'])).toThrow(/--http/)
  })

  it('serves the addr-file with ICE servers, TURN credentials minted for the asking peer', async () => {
    const file = join(await mkdtemp(join(tmpdir(), 'pc-http-')), 'relay.json')
    await writeAddrFile(file, [`/dns4/a.example/tcp/443/wss/p2p/${ID}`])
    const srv = await serveConfig({
      host: '127.0.0.1',
      port: 0,
      addrFile: file,
      ice: {
        servers: [{ urls: ['stun:turn.example:3478'] }],
        turn: { urls: ['turn:turn.example:3478'], secret: 's3cret' },
      },
    })
    try {
      const res = await fetch(`${srv.url}?peer=${ID2}`)
      expect(res.headers.get('cache-control')).toBe('no-store')
      expect(res.headers.get('access-control-allow-origin')).toBe('*')
      const body = (await res.json()) as {
        relays: string[]
        iceServers: { username?: string; credential?: string }[]
      }
      expect(body.relays).toEqual([`/dns4/a.example/tcp/443/wss/p2p/${ID}`])
      expect(body.iceServers[0]).toEqual({ urls: ['stun:turn.example:3478'] })
      expect(body.iceServers[1]!.username).toMatch(new RegExp(`^\\d+:${ID2}$`))
      expect(body.iceServers[1]!.credential).toMatch(/^[A-Za-z0-9+/]+=*$/)
      expect(JSON.stringify(body)).not.toContain('s3cret')
      expect((await fetch(srv.url.replace('peer-compute.json', 'key'))).status).toBe(404)
    } finally {
      await srv.close()
    }
  })
})
