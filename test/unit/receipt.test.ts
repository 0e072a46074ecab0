import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import {
  generateIdentity,
  peerIdOf,
  privateKeyFromBytes,
  privateKeyToBytes,
  publicKeyOfPeerId,
  sign,
  useNativeEd25519,
  verifyByPeerId,
} from '../../src/trust/keys.ts'
import {
  decodeReceipt,
  encodeReceipt,
  msToUs,
  type Receipt,
  type ReceiptBody,
  signReceipt,
  verifyReceipt,
} from '../../src/trust/receipt.ts'

const cidOf = async (s: string) => CID.createV1(0x71, await sha256.digest(new TextEncoder().encode(s)))
/** CIDv1 dag-cbor sha2-256 of the encoded receipt. */
const receiptCid = async (r: Receipt) => CID.createV1(dagCbor.code, await sha256.digest(encodeReceipt(r)))

const rejection = async (p: Promise<unknown>): Promise<Error> => {
  try {
    await p
  } catch (err) {
    return err as Error
  }
  throw new Error('expected a rejection')
}

describe('keys', () => {
  afterEach(() => useNativeEd25519(true))
  it('round trips a private key and recovers the public key from the peer id', async () => {
    const key = await generateIdentity()
    const back = privateKeyFromBytes(privateKeyToBytes(key))
    expect(peerIdOf(back)).toBe(peerIdOf(key))
    expect(publicKeyOfPeerId(peerIdOf(key)).equals(key.publicKey)).toBe(true)
  })

  it('signs the same bytes through node:crypto and WebCrypto, and each checks the other', async () => {
    const key = await generateIdentity()
    const id = peerIdOf(key)
    const data = new TextEncoder().encode('a cut, a receipt, an advert')
    const sigs: Uint8Array[] = []
    for (const native of [true, false]) {
      expect(useNativeEd25519(native)).toBe(native) // Node has node:crypto
      sigs.push(await sign(key, data))
    }
    expect(Buffer.from(sigs[0]!).toString('hex')).toBe(Buffer.from(sigs[1]!).toString('hex'))
    const bad = Uint8Array.from(sigs[0]!, (b, i) => (i === 5 ? b ^ 1 : b))
    const other = peerIdOf(await generateIdentity())
    for (const native of [false, true]) {
      useNativeEd25519(native)
      for (const sig of sigs) await verifyByPeerId(id, data, sig)
      for (const [p, d, s] of [
        [id, data, bad],
        [id, data.subarray(1), sigs[0]!],
        [other, data, sigs[0]!],
        [id, data, sigs[0]!.subarray(0, 63)],
      ] as const)
        await expect(verifyByPeerId(p, d, s)).rejects.toMatchObject({ name: 'InvalidSignatureError' })
    }
  })

  it('refuses strings that are not key-carrying peer ids', () => {
    expect(() => publicKeyOfPeerId('not-a-peer-id')).toThrow(
      expect.objectContaining({ name: 'InvalidSignatureError' }),
    )
  })
})

describe('receipt', () => {
  let worker: Awaited<ReturnType<typeof generateIdentity>>
  let other: Awaited<ReturnType<typeof generateIdentity>>
  let body: ReceiptBody
  let receipt: Receipt

  beforeAll(async () => {
    worker = await generateIdentity()
    other = await generateIdentity()
    body = {
      v: 1,
      job: await cidOf('job'),
      model: await cidOf('model'),
      input: await cidOf('input'),
      output: await cidOf('output'),
      worker: peerIdOf(worker),
      requester: peerIdOf(other),
      ep: 'wasm',
      adapter: 'cpu',
      timing: { queueUs: msToUs(0.25), runUs: msToUs(12.3456) },
      ts: Date.now(),
    }
    receipt = await signReceipt(body, worker)
  })

  it('signs and verifies with the receipt alone', async () => {
    expect(body.timing).toEqual({ queueUs: 250, runUs: 12346 })
    const ok = await verifyReceipt(receipt)
    expect(ok.body.output.equals(body.output)).toBe(true)
    await verifyReceipt(receipt, { ...body })
  })

  it('verifies after encode/decode and has a stable CID', async () => {
    const bytes = encodeReceipt(receipt)
    const back = decodeReceipt(bytes)
    await verifyReceipt(back)
    expect((await receiptCid(back)).equals(await receiptCid(receipt))).toBe(true)
    // the untrusted path: raw decoded CBOR with CID objects inside
    await verifyReceipt(dagCbor.decode(bytes))
  })

  it('rejects a tampered body field', async () => {
    for (const patch of [
      { ts: body.ts + 1 },
      { ep: 'webgpu' },
      { timing: { queueUs: 250, runUs: 1 } },
      { output: await cidOf('other') },
    ]) {
      const err = await rejection(verifyReceipt({ body: { ...receipt.body, ...patch }, sig: receipt.sig }))
      expect(err.name).toBe('InvalidSignatureError')
    }
  })

  it('rejects a tampered or truncated signature', async () => {
    const sig = new Uint8Array(receipt.sig)
    sig[0]! ^= 1
    expect((await rejection(verifyReceipt({ body: receipt.body, sig }))).name).toBe('InvalidSignatureError')
    const short = receipt.sig.subarray(1)
    expect((await rejection(verifyReceipt({ body: receipt.body, sig: short }))).name).toBe(
      'InvalidSignatureError',
    )
  })

  it('rejects a receipt claiming another worker', async () => {
    const forged = { body: { ...receipt.body, worker: peerIdOf(other) }, sig: receipt.sig }
    expect((await rejection(verifyReceipt(forged))).name).toBe('InvalidSignatureError')
    // signing as someone else is refused up front
    expect((await rejection(signReceipt(body, other))).name).toBe('InvalidSignatureError')
  })

  it('rejects expectation mismatches with the right error', async () => {
    const other1 = await cidOf('x')
    expect((await rejection(verifyReceipt(receipt, { output: other1 }))).name).toBe('OutputMismatchError')
    for (const f of ['job', 'model', 'input'] as const) {
      expect((await rejection(verifyReceipt(receipt, { [f]: other1 }))).name).toBe('InvalidReceiptError')
    }
    expect((await rejection(verifyReceipt(receipt, { worker: peerIdOf(other) }))).name).toBe(
      'InvalidReceiptError',
    )
    expect((await rejection(verifyReceipt(receipt, { requester: peerIdOf(worker) }))).name).toBe(
      'InvalidReceiptError',
    )
  })

  it('rejects malformed receipts', async () => {
    const b = receipt.body as unknown as Record<string, unknown>
    const { ts: _ts, ...noTs } = b
    const bad: unknown[] = [
      null,
      [],
      { body: b },
      { body: { ...b, v: 2 }, sig: receipt.sig },
      { body: { ...b, job: body.job.toString() }, sig: receipt.sig },
      { body: { ...b, ts: 1.5 }, sig: receipt.sig },
      { body: { ...b, timing: { queueUs: -1, runUs: 0 } }, sig: receipt.sig },
      { body: { ...b, extra: 1 }, sig: receipt.sig },
      { body: noTs, sig: receipt.sig },
      { body: { ...b, ep: '' }, sig: receipt.sig },
      { body: b, sig: 'abc' },
    ]
    for (const x of bad) expect((await rejection(verifyReceipt(x))).name).toBe('InvalidReceiptError')
    expect(() => decodeReceipt(Uint8Array.of(0xff))).toThrow(
      expect.objectContaining({ name: 'InvalidReceiptError' }),
    )
  })
})
