/**
 * `npm run demo`: builds the app and the widget, then serves the demo page on a second origin (no
 * COOP/COEP) that embeds the widget from the app server, with the relay.
 */
import { resolve } from 'node:path'
import { build } from 'vite'
import { copyModels } from './copy-models.ts'
import { startRelayProcess } from './relay-process.ts'
import { serveStatic } from './serve.ts'

const root = resolve(import.meta.dirname, '..')
const port = Number(process.env.PORT ?? 8080)
const demoPort = Number(process.env.DEMO_PORT ?? 8081)
await copyModels(() => {})
await build({ root, logLevel: 'warn' })
await build({ root, configFile: resolve(root, 'vite.widget.config.ts'), logLevel: 'warn' })

const relay = await startRelayProcess({ keyFile: resolve(root, '.relay/key') })
const app = await serveStatic({ root: resolve(root, 'dist'), port, relayFile: relay.addrFile })
const demo = await serveStatic({ root: resolve(root, 'demo'), port: demoPort, isolated: false, cors: false })
const site = `http://localhost:${demoPort}/?site=${encodeURIComponent(app.url)}`
console.log(
  `\nThird-party demo: ${site}\npeer-compute:    ${app.url} (open it in another tab to submit jobs)\n`,
)

const stop = async () => {
  await demo.close()
  await app.close()
  await relay.stop()
  process.exit(0)
}
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
