#!/usr/bin/env node
/** `npm run relay` entry: flags --port, --host, --key-file, --addr-file (all optional). */
import './polyfill.ts'
import { mkdir, rename, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { parseArgs } from 'node:util'
import { loadOrCreateKey } from './key.ts'
import { createRelay } from './relay.ts'

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.RELAY_PORT ?? '9090' },
    host: { type: 'string', default: '127.0.0.1' },
    'key-file': { type: 'string', default: '.relay/key' },
    'addr-file': { type: 'string', default: '.relay/relay.json' },
  },
})

const stamp = () => new Date().toISOString()
const relay = await createRelay({
  privateKey: await loadOrCreateKey(values['key-file']),
  host: values.host,
  port: Number(values.port),
  log: (line) => console.log(`${stamp()} relay ${line}`),
})
await mkdir(dirname(values['addr-file']), { recursive: true })
// Write then rename, so a reader never sees a half-written file.
await writeFile(`${values['addr-file']}.tmp`, JSON.stringify({ relays: relay.multiaddrs }))
await rename(`${values['addr-file']}.tmp`, values['addr-file'])
console.log(`${stamp()} relay listening ${relay.multiaddrs.join(' ')}`)

const shutdown = async () => {
  await relay.stop()
  process.exit(0)
}
process.on('SIGINT', shutdown)
process.on('SIGTERM', shutdown)
