/** The relay process: `peer-compute relay` and `node dist-relay/relay.mjs` both run this until SIGINT/SIGTERM. */
import { writeAddrFile } from './addr-file.ts'
import { parseRelayArgs, RELAY_HELP, type RelayConfig } from './config.ts'
import { serveConfig } from './config-http.ts'
import { loadOrCreateKey } from './key.ts'
import { createRelay } from './relay.ts'
import { iceConfigFromEnv } from './turn.ts'

const stamp = () => new Date().toISOString()

/** Resolves with the exit status: 0 after a signal or --help, 2 on a usage error. */
export async function runRelay(argv: string[]): Promise<number> {
  const say = (line: string) => console.log(`${stamp()} relay ${line}`)
  let cfg: RelayConfig
  try {
    const parsed = parseRelayArgs(argv, process.env)
    if (parsed.help) {
      console.log(RELAY_HELP)
      return 0
    }
    cfg = parsed.config
  } catch (err) {
    console.error(`relay: ${(err as Error).message}\n\n${RELAY_HELP}`)
    return 2
  }
  const ice = cfg.http ? iceConfigFromEnv() : undefined // read (and checked) only where it is served

  const relay = await createRelay({ ...cfg, privateKey: await loadOrCreateKey(cfg.keyFile), log: say })
  await writeAddrFile(cfg.addrFile, relay.multiaddrs)
  say(`listening ${cfg.listen.join(' ')}`)
  say(`announcing ${relay.multiaddrs.join(' ')} (written to ${cfg.addrFile})`)
  const config = cfg.http
    ? await serveConfig({ ...cfg.http, addrFile: cfg.addrFile, ...(ice ? { ice } : {}) })
    : undefined
  if (config) say(`serving ${config.url}${ice?.turn ? ' with minted TURN credentials' : ''}`)

  return new Promise((resolve) => {
    const shutdown = async () => {
      await config?.close()
      await relay.stop()
      resolve(0)
    }
    process.once('SIGINT', shutdown)
    process.once('SIGTERM', shutdown)
  })
}
