import type { Peer } from '../src/index.ts'

declare global {
  interface Window {
    /** The app's peer, exposed by src/ui/main.ts for tests and the devtools console. */
    __peer: Peer
  }
}
