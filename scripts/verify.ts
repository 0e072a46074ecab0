/**
 * `npm run verify -- <file…> [--quorum N]`: the CLI's `peer-compute verify` (node/commands/verify.ts)
 * from the sources. Exit status 0 when valid, 1 when not (the reason is printed), 2 on usage errors.
 */
import '../node/relay/polyfill.ts'
import { VERIFY_HELP, verify } from '../node/commands/verify.ts'

try {
  process.exitCode = await verify(process.argv.slice(2), console.log, console.error)
} catch (err) {
  console.error(`${(err as Error).message}\n\n${VERIFY_HELP}`)
  process.exitCode = 2
}
