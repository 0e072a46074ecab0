/**
 * scripts/serve.ts's static server as a process of its own, so it can run in a lab namespace:
 * `node --import tsx test/helpers/serve-main.ts --root dist --host H --port N [--relay-file F]
 *  [--stun-url stun:… …] [--turn-url turn:… … --turn-secret S [--turn-ttl SECONDS]]`.
 * TURN credentials are minted per request for `?peer=`, as `npm start` does (node/relay/turn.ts).
 * Prints `listening http://H:PORT/` once it accepts connections.
 */
import type { AddressInfo } from 'node:net'
import { parseArgs } from 'node:util'
import type { IceConfig } from '../../node/relay/turn.ts'
import { serveStatic } from '../../scripts/serve.ts'

const { values } = parseArgs({
  options: {
    root: { type: 'string', default: 'dist' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
    'relay-file': { type: 'string' },
    'stun-url': { type: 'string', multiple: true },
    'turn-url': { type: 'string', multiple: true },
    'turn-secret': { type: 'string' },
    'turn-ttl': { type: 'string' },
  },
})
const stun = values['stun-url'] ?? []
const turn = values['turn-url'] ?? []
if (turn.length > 0 && !values['turn-secret']) throw new Error('--turn-url needs --turn-secret')
const ice: IceConfig = {
  ...(stun.length ? { servers: [{ urls: stun }] } : {}),
  ...(turn.length
    ? {
        turn: {
          urls: turn,
          secret: values['turn-secret']!,
          ...(values['turn-ttl'] ? { ttlSeconds: Number(values['turn-ttl']) } : {}),
        },
      }
    : {}),
}
const web = await serveStatic({
  root: values.root,
  host: values.host,
  port: Number(values.port),
  relayFile: values['relay-file'],
  ice,
})
console.log(`listening http://${values.host}:${(web.server.address() as AddressInfo).port}/`)
// Exit at once: a browser's keep-alive connections would hold a graceful close open.
process.on('SIGTERM', () => process.exit(0))
process.on('SIGINT', () => process.exit(0))
