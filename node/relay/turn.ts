/**
 * Time-limited TURN credentials for coturn's `use-auth-secret` (the TURN REST API): username
 * `expiry:peer`, credential base64(HMAC-SHA1(secret, username)). Whatever serves
 * `peer-compute.json` mints them per request, so the static site never publishes a long-lived
 * password and the shared secret never leaves the server.
 */
import { createHmac } from 'node:crypto'

export interface TurnSecretConfig {
  /** turn:/turns: URLs of coturn servers sharing `secret` (its static-auth-secret). */
  urls: string[]
  secret: string
  /** Lifetime of minted credentials; default one day. */
  ttlSeconds?: number
}

export interface IceConfig {
  /** Entries given to pages as they are: STUN URLs, or TURN with a fixed username and credential. */
  servers?: { urls: string | string[]; username?: string; credential?: string }[]
  turn?: TurnSecretConfig
}

/** A base58btc or base32 PeerId, as tabs send it; anything else is named `anon`. */
const PEER = /^[1-9A-HJ-NP-Za-km-z]{30,64}$|^b[a-z2-7]{40,80}$/

export function mintTurnCredential(
  cfg: TurnSecretConfig,
  peer: string | null | undefined,
  now = Date.now(),
): { urls: string[]; username: string; credential: string; expiresAt: number } {
  const ttl = cfg.ttlSeconds ?? 86_400
  const expiry = Math.floor(now / 1000) + ttl
  const username = `${expiry}:${peer && PEER.test(peer) ? peer : 'anon'}`
  const credential = createHmac('sha1', cfg.secret).update(username).digest('base64')
  return { urls: cfg.urls, username, credential, expiresAt: expiry * 1000 }
}

/** The config document for one request: the relay file's fields plus ICE servers (minted ones fresh). */
export function configFor(base: Record<string, unknown>, ice: IceConfig | undefined, peer?: string | null) {
  const out: Record<string, unknown> = { relays: [], ...base }
  const servers: unknown[] = [...(ice?.servers ?? [])]
  if (ice?.turn) {
    const { expiresAt, ...minted } = mintTurnCredential(ice.turn, peer)
    servers.push(minted)
    out.iceServersExpireAt = expiresAt
  }
  if (servers.length > 0) out.iceServers = servers
  return out
}

/**
 * ICE settings from the environment, for `npm start` and the relay: PC_STUN_URLS and PC_TURN_URLS
 * (space-separated), PC_TURN_SECRET (coturn's static-auth-secret), PC_TURN_TTL (seconds).
 */
export function iceConfigFromEnv(env: NodeJS.ProcessEnv = process.env): IceConfig | undefined {
  const list = (v?: string) => (v ?? '').split(/\s+/).filter(Boolean)
  const stun = list(env.PC_STUN_URLS)
  const turn = list(env.PC_TURN_URLS)
  if (turn.length > 0 && !env.PC_TURN_SECRET) throw new Error('PC_TURN_URLS needs PC_TURN_SECRET')
  if (stun.length === 0 && turn.length === 0) return undefined
  return {
    ...(stun.length ? { servers: [{ urls: stun }] } : {}),
    ...(turn.length
      ? {
          turn: {
            urls: turn,
            secret: env.PC_TURN_SECRET!,
            ...(env.PC_TURN_TTL ? { ttlSeconds: ttl(env.PC_TURN_TTL) } : {}),
          },
        }
      : {}),
  }
}

/** A typo would mint `NaN:peer` usernames that coturn refuses: TURN would fail without a word. */
function ttl(v: string): number {
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < 60) throw new Error(`PC_TURN_TTL must be whole seconds ≥ 60, got ${v}`)
  return n
}
