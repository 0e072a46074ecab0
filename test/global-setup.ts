/** Runs once before all tests: make sure Chromium is there (or installed) before any browser test. */
import { findChromium } from './helpers/chromium.ts'

export default function setup() {
  const path = findChromium()
  console.log(`browser tests use ${path}`)
}
