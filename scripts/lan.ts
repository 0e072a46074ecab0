/**
 * Serving the app to a LAN from `npm start`: this machine's LAN addresses, a self-signed
 * certificate for them (kept, so a browser's exception survives restarts), and a TLS front for the
 * relay's WebSocket, since an HTTPS page may only open `wss:`.
 */
import { X509Certificate } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { connect, type Server } from 'node:net'
import { networkInterfaces } from 'node:os'
import { join } from 'node:path'
import { createServer as createTlsServer } from 'node:tls'
import { generate } from 'selfsigned'

export interface Tls {
  cert: string
  key: string
  /** SHA-256 fingerprint as browsers show it (AA:BB:…). */
  fingerprint: string
}

/** IPv4 addresses other machines can reach this one on; for host `0.0.0.0`, all non-internal ones. */
export function lanAddresses(host: string): string[] {
  if (host !== '0.0.0.0') return [host]
  return Object.values(networkInterfaces())
    .flat()
    .filter((i) => i != null && i.family === 'IPv4' && !i.internal)
    .map((i) => i!.address)
}

/** The certificate in `dir` if it covers `ips`, else a new one (one year, EC P-256) written there. */
export async function loadOrCreateCert(dir: string, ips: string[]): Promise<Tls> {
  const certFile = join(dir, 'cert.pem')
  const keyFile = join(dir, 'key.pem')
  const existing = await Promise.all([readFile(certFile, 'utf8'), readFile(keyFile, 'utf8')]).catch(
    () => undefined,
  )
  if (existing) {
    const x = new X509Certificate(existing[0])
    const fresh = new Date(x.validTo).getTime() > Date.now() + 86_400_000
    if (fresh && ips.every((ip) => x.checkIP(ip))) {
      return { cert: existing[0], key: existing[1], fingerprint: x.fingerprint256 }
    }
  }
  const pems = await generate([{ name: 'commonName', value: 'peer-compute (self-signed)' }], {
    keyType: 'ec',
    algorithm: 'sha256',
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          ...[...new Set(['127.0.0.1', ...ips])].map((ip) => ({ type: 7 as const, ip })),
        ],
      },
    ],
  })
  await mkdir(dir, { recursive: true, mode: 0o700 })
  await writeFile(keyFile, pems.private, { mode: 0o600 })
  await writeFile(certFile, pems.cert)
  return { cert: pems.cert, key: pems.private, fingerprint: new X509Certificate(pems.cert).fingerprint256 }
}

/** Terminates TLS on `host:port` and pipes each connection to the relay's plain WebSocket port. */
export async function startTlsFront(
  tls: Tls,
  host: string,
  port: number,
  relayPort: number,
): Promise<Server> {
  const server = createTlsServer({ cert: tls.cert, key: tls.key }, (socket) => {
    const relay = connect(relayPort, '127.0.0.1')
    socket.pipe(relay).pipe(socket)
    const end = () => {
      socket.destroy()
      relay.destroy()
    }
    socket.on('error', end)
    relay.on('error', end)
  })
  await new Promise<void>((ok, fail) => {
    server.once('error', fail)
    server.listen(port, host, ok)
  })
  return server
}
