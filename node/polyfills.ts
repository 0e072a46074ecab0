/** What libp2p expects of its platform and Node 20 lacks: imported before anything else. */
import './relay/polyfill.ts'
import { WebSocket as NodeWebSocket } from 'ws'

// The WebSockets transport dials relays with the global WebSocket, which Node 20 does not have.
globalThis.WebSocket ??= NodeWebSocket as unknown as typeof WebSocket
