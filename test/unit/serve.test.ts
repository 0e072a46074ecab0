/** The static server over real HTTP: containment, caching, isolation headers, types, the relay config. */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type StaticServer, serveStatic } from '../../scripts/serve.ts'

interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

/** node:http sends the path as given; fetch would normalize `%2e%2e/` away before it left. */
const get = (base: string, path: string, headers: Record<string, string> = {}) =>
  new Promise<Reply>((ok, fail) => {
    const { hostname, port } = new URL(base)
    request({ hostname, port, path, headers }, (res) => {
      let body = ''
      res.setEncoding('latin1')
      res.on('data', (c: string) => {
        body += c
      })
      res.on('end', () => ok({ status: res.statusCode!, headers: res.headers, body }))
    })
      .on('error', fail)
      .end()
  })

const WASM = '\0asm\x01\0\0\0'
const files: Record<string, string> = {
  'dist/index.html': '<!doctype html><title>app</title>',
  'dist/embed.html': '<!doctype html><title>embed</title>',
  'dist/widget.js': 'export {}',
  'dist/assets/main-BdKLu_ij.js': 'console.log(1)',
  'dist/assets/ort-wasm-simd-threaded.jsep-MDYUKy93.wasm': WASM,
  'dist/models/tiny.onnx': 'onnx',
  'dist/models/vocab.txt': 'a b',
  'dist/sub/index.html': '<p>sub</p>',
  'dist/.env': 'SECRET',
  'dist-old/x': 'SECRET',
  'secret.txt': 'SECRET',
}

describe('serveStatic', () => {
  let base: string
  let relayFile: string
  let app: StaticServer
  let plain: StaticServer

  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), 'pc-serve-'))
    for (const [name, body] of Object.entries(files)) {
      await mkdir(dirname(join(base, name)), { recursive: true })
      await writeFile(join(base, name), body, 'latin1')
    }
    relayFile = join(base, 'relay.json')
    app = await serveStatic({ root: join(base, 'dist'), relayFile })
    plain = await serveStatic({ root: join(base, 'dist'), isolated: false, cors: false })
  })
  afterAll(async () => {
    await app?.close()
    await plain?.close()
    await rm(base, { recursive: true, force: true })
  })

  it('never serves a file outside root, whatever the encoding', async () => {
    const attempts = [
      '/..%2fdist-old%2fx',
      '/..%2Fdist-old%2Fx',
      '/%2e%2e/dist-old/x',
      '/%2E%2E%2Fdist-old%2Fx',
      '/.%2e/dist-old/x',
      '/..%5cdist-old%5cx',
      '/..\\dist-old\\x',
      '/../dist-old/x',
      '/assets/../../dist-old/x',
      '/assets/..%2f..%2fdist-old%2fx',
      '/%252e%252e%252fdist-old%252fx',
      '/..%2fsecret.txt',
      '/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd',
      '/.env',
      '/%2eenv',
      '/%zz',
    ]
    for (const path of attempts) {
      const r = await get(app.url, path)
      expect({ path, status: r.status }).toEqual({ path, status: 404 })
      expect(r.body).not.toContain('SECRET')
      expect(r.body).not.toContain('root:')
    }
    expect((await get(app.url, '/index.html')).status).toBe(200) // still up after a malformed escape
  })

  it('answers If-None-Match with 304 on every file', async () => {
    for (const path of ['/', '/index.html', '/widget.js', '/assets/main-BdKLu_ij.js', '/models/tiny.onnx']) {
      const first = await get(app.url, path)
      const etag = first.headers.etag as string
      expect(etag, path).toMatch(/^(W\/)?".+"$/)
      const again = await get(app.url, path, { 'if-none-match': etag })
      expect(again.status, path).toBe(304)
      expect(again.body).toBe('')
      expect(again.headers['cross-origin-embedder-policy']).toBe('require-corp')
      expect((await get(app.url, path, { 'if-none-match': 'W/"0-0"' })).status).toBe(200)
    }
  })

  it('caches hashed assets for a year and revalidates everything else', async () => {
    const immutable = 'public, max-age=31536000, immutable'
    for (const path of ['/assets/main-BdKLu_ij.js', '/assets/ort-wasm-simd-threaded.jsep-MDYUKy93.wasm'])
      expect((await get(app.url, path)).headers['cache-control'], path).toBe(immutable)
    const etag = (await get(app.url, '/assets/main-BdKLu_ij.js')).headers.etag as string
    const revalidated = await get(app.url, '/assets/main-BdKLu_ij.js', { 'if-none-match': etag })
    expect(revalidated.headers['cache-control']).toBe(immutable)
    for (const path of ['/', '/index.html', '/embed.html', '/widget.js', '/models/tiny.onnx'])
      expect((await get(app.url, path)).headers['cache-control'], path).toBe('no-cache')
    const missing = await get(app.url, '/assets/gone-AAAAAAAA.js')
    expect(missing.status).toBe(404)
    expect(missing.headers['cache-control']).toBeUndefined()
  })

  it('sends COOP/COEP and CORS headers, and none of them when both are off', async () => {
    for (const path of ['/', '/assets/main-BdKLu_ij.js', '/peer-compute.json', '/missing']) {
      const { headers } = await get(app.url, path)
      expect(headers['cross-origin-opener-policy'], path).toBe('same-origin')
      expect(headers['cross-origin-embedder-policy'], path).toBe('require-corp')
      expect(headers['cross-origin-resource-policy'], path).toBe('cross-origin')
      expect(headers['access-control-allow-origin'], path).toBe('*')
      const off = (await get(plain.url, path)).headers
      for (const h of [
        'cross-origin-opener-policy',
        'cross-origin-embedder-policy',
        'cross-origin-resource-policy',
        'access-control-allow-origin',
      ])
        expect(off[h], `${path} ${h}`).toBeUndefined()
    }
  })

  it('serves each file with its type and bytes', async () => {
    const wasm = await get(app.url, '/assets/ort-wasm-simd-threaded.jsep-MDYUKy93.wasm')
    expect(wasm.headers['content-type']).toBe('application/wasm')
    expect(wasm.body).toBe(WASM)
    expect(wasm.headers['content-length']).toBe(String(WASM.length))
    const types: [string, RegExp][] = [
      ['/models/tiny.onnx', /^application\/octet-stream$/],
      ['/assets/main-BdKLu_ij.js', /^text\/javascript/],
      ['/widget.js', /^text\/javascript/],
      ['/index.html', /^text\/html; ?charset=utf-8$/],
      ['/models/vocab.txt', /^text\/plain; ?charset=utf-8$/],
    ]
    for (const [path, type] of types)
      expect((await get(app.url, path)).headers['content-type'], path).toMatch(type)
  })

  it('serves index.html for a directory and 404 for a missing file', async () => {
    expect((await get(app.url, '/')).body).toBe(files['dist/index.html'])
    expect((await get(app.url, '/sub/')).body).toBe(files['dist/sub/index.html'])
    expect((await get(app.url, '/?x=1')).status).toBe(200)
    const missing = await get(app.url, '/missing.js')
    expect(missing.status).toBe(404)
    expect(missing.body).toBe('not found')
    expect((await get(app.url, '/models/')).status).toBe(404)
  })

  it('re-reads peer-compute.json per request, never cached', async () => {
    expect((await get(app.url, '/peer-compute.json')).status).toBe(404) // no relay yet
    await writeFile(relayFile, '{"relays":["/a"]}')
    const first = await get(app.url, '/peer-compute.json')
    expect(first.body).toBe('{"relays":["/a"]}')
    expect(first.headers['cache-control']).toBe('no-store')
    expect(first.headers['content-type']).toBe('application/json')
    await writeFile(relayFile, '{"relays":["/b"]}')
    expect((await get(app.url, '/peer-compute.json?t=1')).body).toBe('{"relays":["/b"]}')
    expect((await get(plain.url, '/peer-compute.json')).body).toBe('{"relays":[]}')
  })

  it('mints TURN credentials per request for the peer the page names, keeping the secret', async () => {
    const turn = { urls: ['turn:100.64.0.2:3478'], secret: 'k3y', ttlSeconds: 60 }
    const ice = await serveStatic({ root: join(base, 'dist'), relayFile, ice: { turn } })
    try {
      const peer = '12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtN'
      const res = await get(ice.url, `/peer-compute.json?peer=${peer}`)
      const cfg = JSON.parse(res.body)
      expect(cfg.relays).toEqual(['/b'])
      expect(cfg.iceServers[0].urls).toEqual(turn.urls)
      expect(cfg.iceServers[0].username).toMatch(new RegExp(`^\\d+:${peer}$`))
      expect(res.body).not.toContain('k3y')
      expect(res.headers['cache-control']).toBe('no-store')
    } finally {
      await ice.close()
    }
  })
})
