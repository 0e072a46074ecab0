/**
 * deploy/: what can be checked without the internet. The example environment is one the relay
 * accepts; the proxies point where it listens and send the headers the app needs; the systemd unit
 * runs the bundle; and coturn, run with deploy/turnserver.conf on 127.0.0.1, grants a TURN
 * allocation to credentials minted as the relay mints them, refuses a forged one, and refuses to
 * relay to private addresses.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { createHash, createHmac, randomBytes } from 'node:crypto'
import { createSocket, type Socket } from 'node:dgram'
import { existsSync, readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { parseRelayArgs } from '../../node/relay/config.ts'
import { iceConfigFromEnv, mintTurnCredential } from '../../node/relay/turn.ts'
import { isolationHeaders } from '../../vite.config.ts'
import { findOrInstall } from '../helpers/debian-tool.ts'

const DEPLOY = resolve(import.meta.dirname, '../../deploy')
const read = (f: string) => readFileSync(join(DEPLOY, f), 'utf8')
const envExample = Object.fromEntries(
  read('relay.env.example')
    .split('\n')
    .filter((l) => /^[A-Z_]+=/.test(l))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
)

describe('deploy/ files', () => {
  it('relay.env.example is a configuration the relay accepts', () => {
    const r = parseRelayArgs([], envExample)
    if (r.help) throw new Error('help')
    expect(r.config.listen).toEqual(['/ip4/127.0.0.1/tcp/9090/ws'])
    expect(r.config.announce).toEqual(['/dns4/relay.example.com/tcp/443/wss'])
    expect(r.config.http).toEqual({ host: '127.0.0.1', port: 9091 })
    expect(iceConfigFromEnv(envExample)?.turn?.urls).toHaveLength(2)
  })

  it('Caddyfile and nginx.conf proxy to where the relay listens and send the isolation headers', () => {
    for (const f of ['Caddyfile', 'nginx.conf']) {
      const text = read(f)
      expect(text, f).toContain('127.0.0.1:9090')
      expect(text, f).toContain('127.0.0.1:9091')
      for (const [k, v] of Object.entries(isolationHeaders)) {
        if (k === 'Cross-Origin-Resource-Policy') continue // cross-origin: the widget is embeddable
        expect(text, f).toMatch(new RegExp(`${k}\\s+${v}`))
      }
      expect(text, f).toContain('immutable')
    }
    expect(read('nginx.conf')).toMatch(/limit_conn pc_relay_per_ip \d+/)
  })

  it('the systemd unit runs the bundle with node', () => {
    const unit = read('peer-compute-relay.service')
    expect(unit).toMatch(/^ExecStart=\/usr\/bin\/node dist-relay\/relay\.mjs$/m)
    expect(readFileSync(resolve(DEPLOY, '../vite.relay.config.ts'), 'utf8')).toContain(
      "entryFileNames: 'relay.mjs'",
    )
    if (existsSync('/usr/bin/systemd-analyze'))
      execFileSync('systemd-analyze', ['verify', '--man=no', join(DEPLOY, 'peer-compute-relay.service')])
  })
})

// A STUN/TURN client just big enough for Allocate and CreatePermission (RFC 8489, 8656).
const COOKIE = 0x2112a442
type Attrs = [number, Buffer][]
const attr = (type: number, value: Buffer) => {
  const head = Buffer.alloc(4)
  head.writeUInt16BE(type, 0)
  head.writeUInt16BE(value.length, 2)
  return Buffer.concat([head, value, Buffer.alloc((4 - (value.length % 4)) % 4)])
}
function message(type: number, attrs: Attrs, key?: Buffer): Buffer {
  const body = Buffer.concat(attrs.map(([t, v]) => attr(t, v)))
  const head = Buffer.alloc(20)
  head.writeUInt16BE(type, 0)
  head.writeUInt16BE(body.length + (key ? 24 : 0), 2)
  head.writeUInt32BE(COOKIE, 4)
  randomBytes(12).copy(head, 8)
  const msg = Buffer.concat([head, body])
  return key ? Buffer.concat([msg, attr(0x0008, createHmac('sha1', key).update(msg).digest())]) : msg
}
function parse(buf: Buffer): { type: number; attrs: Map<number, Buffer> } {
  const attrs = new Map<number, Buffer>()
  for (let at = 20; at + 4 <= buf.length; ) {
    const [t, len] = [buf.readUInt16BE(at), buf.readUInt16BE(at + 2)]
    attrs.set(t, buf.subarray(at + 4, at + 4 + len))
    at += 4 + len + ((4 - (len % 4)) % 4)
  }
  return { type: buf.readUInt16BE(0), attrs }
}
const errorCode = (m: ReturnType<typeof parse>) => {
  const e = m.attrs.get(0x0009)
  return e ? e[2]! * 100 + e[3]! : 0
}
const request = (sock: Socket, port: number, msg: Buffer) =>
  new Promise<ReturnType<typeof parse>>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error('no answer from coturn')), 3000)
    sock.once('message', (b) => {
      clearTimeout(timer)
      ok(parse(b))
    })
    sock.send(msg, port, '127.0.0.1')
  })
const transportUdp = (): [number, Buffer] => [0x0019, Buffer.from([17, 0, 0, 0])]
const xorPeer = (ip: string, port: number): [number, Buffer] => {
  const v = Buffer.alloc(8)
  v.writeUInt16BE(0x0001, 0)
  v.writeUInt16BE(port ^ (COOKIE >>> 16), 2)
  v.writeUInt32BE((ip.split('.').reduce((a, o) => (a << 8) | Number(o), 0) ^ COOKIE) >>> 0, 4)
  return [0x0012, v]
}

describe('deploy/turnserver.conf', () => {
  let dir: string
  let turn: ChildProcess | undefined
  afterAll(async () => {
    turn?.kill('SIGKILL')
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('grants minted credentials a TURN allocation, refuses forged ones and relaying to private addresses', async () => {
    const turnserver = findOrInstall({
      env: 'TURNSERVER_PATH',
      path: '/usr/bin/turnserver',
      pkg: 'coturn',
      label: 'coturn (turnserver)',
    })
    dir = await mkdtemp(join(tmpdir(), 'pc-deploy-turn-'))
    const port = 20_000 + Math.floor(Math.random() * 20_000)
    const secret = randomBytes(16).toString('hex')
    // The shipped file, less what this machine cannot have (certificates, the public address, syslog).
    const local = read('turnserver.conf')
      .split('\n')
      .filter(
        (l) => !/^(listening-port|tls-listening-port|static-auth-secret|cert|pkey|log-file|realm)=/.test(l),
      )
    local.push(
      `listening-port=${port}`,
      'listening-ip=127.0.0.1',
      'relay-ip=127.0.0.1',
      'realm=turn.example.com',
      `static-auth-secret=${secret}`,
      'no-tls',
      'no-dtls',
      `log-file=${join(dir, 'turn.log')}`,
      'no-stdout-log',
      `pidfile=${join(dir, 'turn.pid')}`,
      `userdb=${join(dir, 'turndb')}`,
    )
    await writeFile(join(dir, 'turnserver.conf'), local.join('\n'))
    turn = spawn(turnserver, ['-c', join(dir, 'turnserver.conf')], { stdio: 'ignore' })
    const sockets: Socket[] = []
    /** A fresh 5-tuple each time (coturn answers 437 to a second Allocate on one), asked for a nonce. */
    const session = async () => {
      const sock = createSocket('udp4')
      sockets.push(sock)
      await new Promise<void>((ok) => sock.bind(0, '127.0.0.1', ok))
      const first = await request(sock, port, message(0x0003, [transportUdp()]))
      expect(errorCode(first)).toBe(401)
      return { sock, realm: first.attrs.get(0x0014)!, nonce: first.attrs.get(0x0015)! }
    }
    const allocate = async (username: string, password: string) => {
      const { sock, realm, nonce } = await session()
      const key = createHash('md5').update(`${username}:${realm}:${password}`).digest()
      const auth: Attrs = [
        [0x0006, Buffer.from(username)],
        [0x0014, realm],
        [0x0015, nonce],
      ]
      return {
        sock,
        key,
        auth,
        res: await request(sock, port, message(0x0003, [transportUdp(), ...auth], key)),
      }
    }
    try {
      // Binding (STUN) until it answers: it takes a moment to open its sockets.
      const probe = createSocket('udp4')
      sockets.push(probe)
      await new Promise<void>((ok) => probe.bind(0, '127.0.0.1', ok))
      let bound: ReturnType<typeof parse> | undefined
      for (let i = 0; i < 20 && !bound; i++)
        bound = await request(probe, port, message(0x0001, [])).catch(() => undefined)
      expect(bound?.type).toBe(0x0101)

      const peer = '12D3KooWHxXkU4WCKSr2kN9E66uyj58ru5dc8gRyTtRmExGuUwUh'
      const forged = await allocate(`${Math.floor(Date.now() / 1000) + 3600}:${peer}`, 'not-the-credential')
      expect(errorCode(forged.res)).toBe(401)
      const { username, credential } = mintTurnCredential({ urls: [], secret }, peer)
      const ok = await allocate(username, credential)
      expect(ok.res.type, `error ${errorCode(ok.res)}`).toBe(0x0103) // Allocate success
      expect(ok.res.attrs.has(0x0016)).toBe(true) // XOR-RELAYED-ADDRESS
      // CreatePermission (it sends nothing to the peer): private ranges are denied, a public address is not.
      const permit = (ip: string) =>
        request(ok.sock, port, message(0x0008, [xorPeer(ip, 9), ...ok.auth], ok.key))
      for (const ip of ['192.168.1.1', '10.0.0.1', '172.16.5.5', '100.64.0.1'])
        expect(errorCode(await permit(ip)), ip).toBe(403)
      expect((await permit('203.0.113.7')).type).toBe(0x0108) // CreatePermission success
    } finally {
      for (const s of sockets) s.close()
    }
  }, 30_000)
})
