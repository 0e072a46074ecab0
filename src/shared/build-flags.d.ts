/**
 * Build-time constants, replaced by Vite's `define` (vite.config.ts, vitest.config.ts). Code under
 * `if (__PC_TEST_HOOKS__)` exists only in the test build (dist-test/) and in Vitest: never in dist/.
 */
declare const __PC_TEST_HOOKS__: boolean
