#!/usr/bin/env node
/**
 * `peer-compute <command>`: the relay, a Node contributor, and a requester's commands. Built into
 * dist-node/cli.mjs (plain `node`, no dev dependency at run time); `npm run cli --` from the sources.
 */
import './polyfills.ts'
import { describeError } from '../src/shared/errors.ts'
import { contribute } from './commands/contribute.ts'
import { map } from './commands/map.ts'
import { ocr } from './commands/ocr.ts'
import { submit } from './commands/submit.ts'
import { vad } from './commands/vad.ts'
import { verify } from './commands/verify.ts'
import { runRelay } from './relay/run.ts'

export const HELP = `usage: peer-compute <command> [flags]   (peer-compute <command> --help for its flags)

commands:
  relay        run a relay that browsers and Node peers join (WebSockets, circuit relay, adverts)
  contribute   serve jobs from this machine with onnxruntime-node, earning signed credit
  submit       run one job on contributors and print the outputs a quorum agreed on
  map          run a model over a folder of inputs; resumes where an interrupted run stopped
  ocr          read the text in PNG and JPEG images (PP-OCRv4 on contributors)
  vad          find speech in WAV files (Silero VAD on contributors)
  verify       check quorum records and credit logs offline

exit status: 0 done; 1 a job failed or a record is invalid; 2 a usage error (a flag, an input,
a data directory in use); 3 the swarm could not be reached (no relay, no direct link).`

/** Errors that mean the command line (or what it names) must change: exit 2. */
const USAGE = new Set([
  'InvalidOptionError',
  'InvalidTensorError',
  'InvalidPolicyError',
  'UnknownModelError',
  'NotOnnxError',
  'ModelTooLargeError',
  'StoreLockedError',
  'ExecutionProviderError',
])
/** parseArgs refuses an unknown flag or a missing value with a TypeError carrying one of these codes. */
const isParseError = (e: Error) => String((e as { code?: unknown }).code ?? '').startsWith('ERR_PARSE_ARGS')
/** Errors that mean the swarm was out of reach: exit 3. */
const UNREACHABLE = new Set(['RelayUnavailableError', 'NoDirectPathError', 'NoPeerAvailableError'])

const HINT: Record<string, string> = {
  StoreLockedError: 'another peer-compute process uses this data directory: pass --dir <another>',
  ExecutionProviderError: 'pass --ep auto to take the first EP that works here',
  RelayUnavailableError: 'check --relay / --config and that the relay runs',
  NoDirectPathError: 'peers are known but unreachable: configure STUN/TURN (--ice or --config)',
  NoPeerAvailableError: 'no contributor offered this model in time: start one, or wait and retry',
}

const COMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  relay: runRelay,
  contribute: (a) => contribute(a, console.log),
  submit: (a) => submit(a, console.log),
  map: (a) => map(a, console.log),
  ocr: (a) => ocr(a, console.log),
  vad: (a) => vad(a, console.log),
  verify: (a) => verify(a, console.log, console.error),
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(HELP)
    return name === undefined ? 2 : 0
  }
  const command = COMMANDS[name]
  if (!command) {
    console.error(`peer-compute: no command "${name}"\n\n${HELP}`)
    return 2
  }
  try {
    return await command(rest)
  } catch (err) {
    const e = err as Error
    const hint = HINT[e.name]
    console.error(`peer-compute ${name}: ${describeError(err)}${hint ? `\n  ${hint}` : ''}`)
    return USAGE.has(e.name) || isParseError(e) ? 2 : UNREACHABLE.has(e.name) ? 3 : 1
  }
}

const code = await main(process.argv.slice(2))
// The command has stopped its peer (ORT threads included); closed WebRTC connections' timers and
// native threads would hold the process for seconds more. Exit once what was printed is written.
process.exitCode = code
process.stdout.write('', () => process.stderr.write('', () => process.exit(code)))
