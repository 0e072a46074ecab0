/** `npm start -- --https`: the kept self-signed certificate and the relay's TLS front. */
import { X509Certificate } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { type AddressInfo, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from 'node:tls'
import { afterAll, describe, expect, it } from 'vitest'
import { lanAddresses, loadOrCreateCert, startTlsFront } from '../../scripts/lan.ts'

const dir = await mkdtemp(join(tmpdir(), 'pc-lan-'))
afterAll(() => rm(dir, { recursive: true, force: true }))

describe('LAN serving', () => {
  it('makes a certificate for the LAN addresses, keeps it, and makes another for a new address', async () => {
    const a = await loadOrCreateCert(dir, ['192.168.7.20'])
    const x = new X509Certificate(a.cert)
    expect(x.checkIP('192.168.7.20')).toBe('192.168.7.20')
    expect(x.checkIP('127.0.0.1')).toBe('127.0.0.1')
    expect(x.fingerprint256).toBe(a.fingerprint)
    expect((await loadOrCreateCert(dir, ['192.168.7.20'])).fingerprint).toBe(a.fingerprint)
    const b = await loadOrCreateCert(dir, ['192.168.7.21'])
    expect(b.fingerprint).not.toBe(a.fingerprint)
  })

  it('lists this host for a named address, and only non-internal IPv4 ones for 0.0.0.0', () => {
    expect(lanAddresses('10.1.2.3')).toEqual(['10.1.2.3'])
    for (const ip of lanAddresses('0.0.0.0')) expect(ip).not.toMatch(/^127\./)
  })

  it('terminates TLS in front of the relay port and pipes bytes both ways', async () => {
    const tls = await loadOrCreateCert(dir, ['127.0.0.1'])
    const echo = createServer((s) => s.pipe(s))
    await new Promise<void>((ok) => echo.listen(0, '127.0.0.1', ok))
    const relayPort = (echo.address() as AddressInfo).port
    const front = await startTlsFront(tls, '127.0.0.1', 0, relayPort)
    const port = (front.address() as AddressInfo).port
    try {
      const reply = await new Promise<string>((ok, fail) => {
        const s = connect({ host: '127.0.0.1', port, ca: tls.cert, servername: 'localhost' }, () =>
          s.write('ping'),
        )
        s.once('data', (d) => {
          ok(d.toString())
          s.end()
        })
        s.once('error', fail)
      })
      expect(reply).toBe('ping')
    } finally {
      front.close()
      echo.close()
    }
  })
})
