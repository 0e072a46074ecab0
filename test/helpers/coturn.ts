/**
 * coturn (Debian's `turnserver`) in the lab's public namespace, with time-limited REST credentials
 * (`use-auth-secret`): username `expiry:peerId`, credential base64 HMAC-SHA1(secret, username).
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { mintTurnCredential } from '../../node/relay/turn.ts'
import { ensureLabTools, type Lab, type LabProcess, waitFor } from './netlab.ts'

export interface Coturn {
  stunUrl: string
  turnUrl: string
  secret: string
  realm: string
  logFile: string
  proc: LabProcess
  /** STUN and/or TURN entries for an RTCPeerConnection; TURN carries fresh credentials for `peerId`. */
  iceServers(opts?: { stun?: boolean; turn?: boolean; peerId?: string; ttlS?: number }): RTCIceServer[]
  /** The log so far (verbose: every request, refusal and allocation), for failure messages. */
  log(): string
  /** Usernames (`expiry:peerId`) of the allocations granted so far, one per allocation. */
  allocations(): string[]
  stop(): Promise<void>
}

/**
 * coturn's REST API credentials, minted as the config server mints them (node/relay/turn.ts): a
 * `peerId` that is not a PeerId's text is named `anon`.
 */
export function turnCredentials(
  secret: string,
  peerId: string,
  ttlS = 3600,
  nowMs = Date.now(),
): { username: string; credential: string } {
  const { username, credential } = mintTurnCredential({ urls: [], secret, ttlSeconds: ttlS }, peerId, nowMs)
  return { username, credential }
}

/** A PeerId-shaped name (46 base58 characters) for a test label, which the minter keeps as it is. */
export const labPeerId = (label: string) => {
  if (!/^[1-9A-HJ-NP-Za-km-z]{1,40}$/.test(label)) throw new Error(`not base58: ${label}`)
  return `12D3KooW${label}`.padEnd(46, 'z')
}

export async function startCoturn(
  lab: Lab,
  opts: { port?: number; minPort?: number; maxPort?: number; realm?: string } = {},
): Promise<Coturn> {
  const { turnserver } = ensureLabTools()
  const port = opts.port ?? 3478
  const realm = opts.realm ?? 'lab.peer-compute.test'
  const secret = randomBytes(16).toString('hex')
  const dir = mkdtempSync(join(tmpdir(), 'pc-coturn-'))
  const logFile = join(dir, 'turn.log')
  const config = join(dir, 'turnserver.conf')
  writeFileSync(logFile, '')
  writeFileSync(
    config,
    [
      `listening-ip=${lab.publicIp}`,
      `relay-ip=${lab.publicIp}`,
      `listening-port=${port}`,
      `min-port=${opts.minPort ?? 49152}`,
      `max-port=${opts.maxPort ?? 49407}`,
      `realm=${realm}`,
      'use-auth-secret',
      `static-auth-secret=${secret}`,
      'fingerprint',
      'no-tls',
      'no-dtls',
      'no-cli',
      'verbose', // logs each allocation: what allocations() reads
      'no-rfc5780', // one public address: no second one to test NAT behaviour with
      `log-file=${logFile}`,
      'simple-log',
      'no-stdout-log',
      `pidfile=${join(dir, 'turn.pid')}`,
      `userdb=${join(dir, 'turndb')}`, // not the shared /var/lib/turn/turndb
    ].join('\n'),
  )
  const proc = lab.spawn(lab.publicNs, [turnserver, '-c', config])
  const log = () => readFileSync(logFile, 'utf8')
  try {
    // coturn 4.6 logs no "listener opened" line by default: wait for its UDP and TCP sockets instead.
    const bound = () => lab.exec(lab.publicNs, ['ss', '-Hlntu', `sport = :${port}`])
    await waitFor(
      `coturn did not listen on ${lab.publicIp}:${port}`,
      () => {
        const s = bound()
        return /^udp/m.test(s) && /^tcp/m.test(s) ? true : undefined
      },
      proc,
      10_000,
    )
  } catch (err) {
    await proc.stop()
    throw new Error(`${(err as Error).message}\n${log().slice(-3000)}`)
  }
  const stunUrl = `stun:${lab.publicIp}:${port}`
  const turnUrl = `turn:${lab.publicIp}:${port}?transport=udp`
  return {
    stunUrl,
    turnUrl,
    secret,
    realm,
    logFile,
    proc,
    iceServers: ({ stun = true, turn = true, peerId = 'lab', ttlS = 3600 } = {}) => [
      ...(stun ? [{ urls: stunUrl }] : []),
      ...(turn ? [{ urls: turnUrl, ...turnCredentials(secret, peerId, ttlS) }] : []),
    ],
    log,
    allocations: () =>
      [...log().matchAll(/user <([^>]+)>: incoming packet ALLOCATE processed, success/g)].map((m) => m[1]!),
    async stop() {
      await proc.stop()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
