/**
 * The built `peer-compute` CLI (dist-node/cli.mjs) as a user meets it: help, usage errors as one line
 * with exit status 2, and the flag parsers behind every command.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { bytesFlag, intFlag, peerOptions } from '../../node/args.ts'
import { outputFile, policyFlags } from '../../node/commands/submit.ts'
import { runCli } from '../helpers/cli.ts'

const RELAY = '/ip4/127.0.0.1/tcp/9/ws/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'

describe('peer-compute CLI', () => {
  it('--help lists every command and the exit statuses', async () => {
    const r = await runCli(['--help'])
    expect(r.code).toBe(0)
    for (const c of ['relay', 'contribute', 'submit', 'map', 'ocr', 'vad', 'verify'])
      expect(r.out).toMatch(new RegExp(`^  ${c} `, 'm'))
    expect(r.out).toMatch(/exit status: 0 done; 1 .*; 2 a usage error/)
  })

  it('each command has its own --help', async () => {
    for (const c of ['contribute', 'submit', 'map', 'ocr', 'vad', 'verify', 'relay']) {
      const r = await runCli([c, '--help'])
      expect(r.code, `${c}: ${r.err}`).toBe(0)
      expect(r.out).toMatch(/--/)
    }
  })

  it('usage errors are one named line (plus a hint) and exit 2', async () => {
    const cases: [string[], RegExp][] = [
      [['frobnicate'], /no command "frobnicate"/],
      [['submit'], /InvalidOptionError: submit takes one model/],
      [['submit', 'mlp-tiny', '--random'], /InvalidOptionError: no relay/],
      [
        ['contribute', '--relay', RELAY, '--slots', 'many'],
        /InvalidOptionError: --slots must be a whole number/,
      ],
      [['verify'], /InvalidOptionError: verify needs at least one file/],
      [['submit', 'mlp-tiny', '--bogus'], /TypeError.*--bogus/],
      [['contribute', '--relay', RELAY, '--ep', 'gpu'], /InvalidOptionError: --ep takes cpu, cuda, webgpu/],
    ]
    for (const [args, want] of cases) {
      const r = await runCli(args)
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.err, args.join(' ')).toMatch(want)
    }
  })

  it('verify: an unknown file kind is invalid (exit 1)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pc-cli-'))
    try {
      await writeFile(join(dir, 'x.json'), '{"kind":"something-else"}')
      const r = await runCli(['verify', join(dir, 'x.json')])
      expect(r.code).toBe(1)
      expect(r.err).toMatch(/INVALID: .*not a known peer-compute record/)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('parses sizes, counts and policies, and refuses nonsense', () => {
    expect(bytesFlag('cache', '2GiB')).toBe(2 * 1024 ** 3)
    expect(bytesFlag('cache', '512m')).toBe(512 * 1024 ** 2)
    expect(bytesFlag('cache', '1048576')).toBe(1048576)
    expect(() => bytesFlag('cache', '2 parsecs')).toThrow(/--cache must be a size/)
    expect(intFlag('slots', '4', 1, 64)).toBe(4)
    expect(() => intFlag('slots', '0', 1, 64)).toThrow(/from 1 to 64/)
    expect(
      policyFlags({ redundancy: '3', quorum: '2', compare: 'tolerance:1e-3', 'no-adaptive': true }),
    ).toEqual({
      redundancy: 3,
      quorum: 2,
      compare: { kind: 'tolerance', atol: 1e-3, rtol: 1e-3 },
      adaptive: false,
    })
    expect(policyFlags({ compare: 'topk:3' }).compare).toEqual({ kind: 'topk', k: 3 })
    expect(() => policyFlags({ compare: 'close-enough' })).toThrow(/--compare must be/)
  })

  it('writes an output only under a plain file name: a contributor cannot name a path', () => {
    expect(outputFile('/o', 'y')).toBe(join('/o', 'y.npy'))
    expect(outputFile('/o', 'logits.0_a-b')).toBe(join('/o', 'logits.0_a-b.npy'))
    for (const bad of ['../../etc/x', 'a/b', '..', '.', '', 'x'.repeat(129), 'a\u0000b', 'C:\\x'])
      expect(() => outputFile('/o', bad), bad).toThrow(/InvalidTensorError|not a plain file name/)
  })

  it('reads relays and ICE servers from flags or a peer-compute.json file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pc-cli-'))
    try {
      const file = join(dir, 'peer-compute.json')
      await writeFile(
        file,
        JSON.stringify({ relays: [RELAY], iceServers: [{ urls: 'stun:127.0.0.1:3478' }] }),
      )
      const o = await peerOptions({
        config: file,
        dir,
        ice: ['turn:127.0.0.1:3478'],
        'ice-username': 'u',
        'ice-credential': 'c',
      })
      expect(o.relays).toEqual([RELAY])
      expect(o.iceServers).toEqual([
        { urls: 'stun:127.0.0.1:3478' },
        { urls: 'turn:127.0.0.1:3478', username: 'u', credential: 'c' },
      ])
      await expect(peerOptions({ dir, relay: [RELAY], ice: ['turn:127.0.0.1:3478'] })).rejects.toThrow(
        /TURN server needs a username/,
      )
      expect((await peerOptions({ dir, config: 'https://example.org/' })).configUrl).toBe(
        'https://example.org/',
      )
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
