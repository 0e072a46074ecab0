#!/usr/bin/env node
/** The relay's entry: `node dist-relay/relay.mjs --help` (built), or `npm run relay -- --help` (source). */
import './polyfill.ts'
import { runRelay } from './run.ts'

process.exit(await runRelay(process.argv.slice(2)))
