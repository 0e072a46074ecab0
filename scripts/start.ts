/**
 * `npm start`: build the app, start the relay and a static server with COOP/COEP, print the URL.
 * `-- --host 0.0.0.0 --https` serves the LAN: a self-signed certificate (fingerprint printed) for
 * the page, and a TLS front for the relay, so a second laptop on the same network can join.
 */
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { build } from 'vite'
import { iceConfigFromEnv } from '../node/relay/turn.ts'
import { copyModels } from './copy-models.ts'
import { lanAddresses, loadOrCreateCert, startTlsFront } from './lan.ts'
import { startRelayProcess } from './relay-process.ts'
import { serveStatic } from './serve.ts'

const { values: flags } = parseArgs({
  options: {
    host: { type: 'string', default: process.env.HOST ?? '127.0.0.1' },
    port: { type: 'string', default: process.env.PORT ?? '8080' },
    'relay-port': { type: 'string', default: process.env.RELAY_PORT ?? '9090' },
    https: { type: 'boolean', default: process.env.HTTPS === '1' },
    help: { type: 'boolean', short: 'h' },
  },
})
if (flags.help) {
  console.log(`npm start [-- options]
  --host ADDR        where to serve the app and relay; 0.0.0.0 for every LAN address [HOST, 127.0.0.1]
  --port N           the app's port [PORT, 8080]
  --relay-port N     the relay's WebSocket port (its TLS front takes N+1 with --https) [RELAY_PORT, 9090]
  --https            HTTPS with a self-signed certificate kept in .relay/tls [HTTPS=1]
STUN/TURN: PC_STUN_URLS, PC_TURN_URLS, PC_TURN_SECRET, PC_TURN_TTL (README, Deploying).`)
  process.exit(0)
}

const root = resolve(import.meta.dirname, '..')
const port = Number(flags.port)
const relayPort = Number(flags['relay-port'])
const host = flags.host
const loopback = /^127\./.test(host) || host === 'localhost'
const ips = lanAddresses(host)
const tls = flags.https ? await loadOrCreateCert(resolve(root, '.relay/tls'), ips) : undefined
if (!loopback && ips.length === 0) throw new Error(`no LAN address found for --host ${host}`)

await copyModels(() => {}) // vendor models from node_modules into public/models/vendor/
await build({ root, logLevel: 'warn' })
await build({ root, configFile: resolve(root, 'vite.widget.config.ts'), logLevel: 'warn' }) // dist/widget.js

// Other machines reach the relay on each LAN address: through the TLS front for an HTTPS page.
const wssPort = relayPort + 1
const announce = tls
  ? ips.map((ip) => `/ip4/${ip}/tcp/${wssPort}/tls/ws`)
  : loopback
    ? []
    : ips.map((ip) => `/ip4/${ip}/tcp/${relayPort}/ws`)
const relay = await startRelayProcess({
  port: relayPort,
  keyFile: resolve(root, '.relay/key'),
  ...(loopback || tls ? {} : { host: '0.0.0.0' }),
  args: announce.flatMap((a) => ['--announce', a]),
})
const front = tls ? await startTlsFront(tls, loopback ? host : '0.0.0.0', wssPort, relayPort) : undefined

// STUN/TURN for peers on other networks: PC_STUN_URLS, PC_TURN_URLS, PC_TURN_SECRET (README, Deploying).
const ice = iceConfigFromEnv()
const web = await serveStatic({
  root: resolve(root, 'dist'),
  port,
  host: loopback ? host : '0.0.0.0',
  relayFile: relay.addrFile,
  ...(ice ? { ice } : {}),
  ...(tls ? { tls } : {}),
})
const scheme = tls ? 'https' : 'http'
const urls = loopback ? [web.url] : ips.map((ip) => `${scheme}://${ip}:${port}/`)
console.log(`\npeer-compute is running:\n${urls.map((u) => `  app    ${u}`).join('\n')}`)
console.log(`  relay  ${relay.multiaddrs.join(' ')}\n`)
if (tls) {
  console.log(`Self-signed certificate, SHA-256 ${tls.fingerprint}`)
  console.log('Check that fingerprint in the browser before you accept the warning.\n')
} else if (!loopback) {
  console.log('Plain http from a LAN address is not a secure context: add --https for other machines.\n')
}
console.log('Open the app URL in two or more tabs and switch some of them to Contribute. Ctrl-C stops.')

let stopping = false
const stop = async () => {
  if (stopping) return
  stopping = true
  front?.close()
  await web.close()
  await relay.stop()
  process.exit(0)
}
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
relay.child.once('exit', (code) => {
  if (!stopping)
    console.error(`relay exited (${code}); the app keeps serving, restart to bring the relay back`)
})
