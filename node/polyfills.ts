/** What libp2p expects of its platform and Node 20 lacks: imported before anything else. */
import './relay/polyfill.ts'
