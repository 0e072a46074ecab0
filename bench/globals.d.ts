import type { BenchApi } from './page.ts'

declare global {
  interface Window {
    /** The bench page's helpers (bench/page.ts), driven by `npm run bench`. */
    __bench: BenchApi
  }
}
