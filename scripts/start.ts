/** `npm start`: build the app, start the relay and a static server with COOP/COEP, print the URL. */
import { resolve } from 'node:path'
import { build } from 'vite'
import { iceConfigFromEnv } from '../src/relay/turn.ts'
import { copyModels } from './copy-models.ts'
import { startRelayProcess } from './relay-process.ts'
import { serveStatic } from './serve.ts'

const root = resolve(import.meta.dirname, '..')
const port = Number(process.env.PORT ?? 8080)
const relayPort = Number(process.env.RELAY_PORT ?? 9090)

await copyModels(() => {}) // vendor models from node_modules into public/models/vendor/
await build({ root, logLevel: 'warn' })
await build({ root, configFile: resolve(root, 'vite.widget.config.ts'), logLevel: 'warn' }) // dist/widget.js
const relay = await startRelayProcess({ port: relayPort, keyFile: resolve(root, '.relay/key') })
// STUN/TURN for peers on other networks: PC_STUN_URLS, PC_TURN_URLS, PC_TURN_SECRET (README, Deploying).
const ice = iceConfigFromEnv()
const web = await serveStatic({
  root: resolve(root, 'dist'),
  port,
  relayFile: relay.addrFile,
  ...(ice ? { ice } : {}),
})
console.log(`\npeer-compute is running:\n  app    ${web.url}\n  relay  ${relay.multiaddrs.join(' ')}\n`)
console.log('Open the app URL in two or more tabs and switch some of them to Contribute. Ctrl-C stops.')

let stopping = false
const stop = async () => {
  if (stopping) return
  stopping = true
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
