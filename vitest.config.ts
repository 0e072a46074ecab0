import { defineConfig } from 'vitest/config'

export default defineConfig({
  // Unit tests drive the test hooks (src/shared/build-flags.d.ts).
  define: { __PC_TEST_HOOKS__: 'true' },
  test: {
    environment: 'node',
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // libp2p 3 needs Promise.withResolvers, which Node 20 lacks.
    setupFiles: ['node/relay/polyfill.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // 2-core machine; browser tests must not overlap.
    fileParallelism: false,
  },
})
