/**
 * The iframe embed's postMessage protocol. Every message from the host is schema-checked here before
 * anything acts on it; nothing in it can reach the peer's keys.
 */
import {
  ARRAY_TYPES,
  DTYPES,
  type DType,
  elementCount,
  type NamedTensors,
  type TensorData,
} from '../shared/tensor.ts'
import { DEFAULT_MAX_ELEMENTS, MAX_RANK } from '../shared/tensor-codec.ts'

export const MESSAGE_TYPE = 'peer-compute'
export const HOST_METHODS = ['status', 'submit', 'pause', 'resume', 'exportCredits'] as const
export type HostMethod = (typeof HOST_METHODS)[number]

export interface SubmitParams {
  model: string
  inputs: NamedTensors
  options: { peer?: string; timeoutMs?: number; persist?: boolean }
}

export type HostRequest =
  | { type: typeof MESSAGE_TYPE; v: 1; id: string; method: Exclude<HostMethod, 'submit'> }
  | { type: typeof MESSAGE_TYPE; v: 1; id: string; method: 'submit'; params: SubmitParams }

/** Embed → host: a reply to a request, or an event. */
export type EmbedMessage =
  | { type: typeof MESSAGE_TYPE; v: 1; id: string; ok: true; result: unknown }
  | { type: typeof MESSAGE_TYPE; v: 1; id: string; ok: false; error: { name: string; message: string } }
  | { type: typeof MESSAGE_TYPE; v: 1; event: string; detail: unknown }

export type Checked<T> = { ok: true; value: T } | { ok: false; why: string }

const MAX_INPUTS = 16
const MAX_ELEMENTS = DEFAULT_MAX_ELEMENTS
const ARRAYS = ARRAY_TYPES as Record<DType, new (n: number) => TensorData>

class Bad extends Error {}
const bad = (why: string): never => {
  throw new Bad(why)
}
const isObj = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x) && !ArrayBuffer.isView(x)
const onlyKeys = (o: Record<string, unknown>, keys: string[], path: string) => {
  const extra = Object.keys(o).filter((k) => !keys.includes(k))
  if (extra.length) bad(`${path} has unexpected field(s) ${extra.slice(0, 3).join(', ')}`)
}
const shortString = (x: unknown, max: number, path: string) =>
  typeof x === 'string' && x.length > 0 && x.length <= max
    ? x
    : bad(`${path} must be a string of 1..${max} chars`)

function tensor(x: unknown, path: string) {
  if (!isObj(x)) return bad(`${path} must be { dtype, dims, data }`)
  onlyKeys(x, ['dtype', 'dims', 'data'], path)
  const dtype = DTYPES.includes(x.dtype as DType)
    ? (x.dtype as DType)
    : bad(`${path}.dtype is not one of ${DTYPES}`)
  const dims = x.dims
  if (!Array.isArray(dims) || dims.length > MAX_RANK || !dims.every((d) => Number.isSafeInteger(d) && d >= 0))
    return bad(`${path}.dims must be up to ${MAX_RANK} non-negative integers`)
  const n = elementCount(dims)
  if (n > MAX_ELEMENTS) bad(`${path} has ${n} elements, over ${MAX_ELEMENTS}`)
  const Want = ARRAYS[dtype]
  let data: TensorData
  if (x.data instanceof Want) data = x.data
  else if (Array.isArray(x.data) && dtype !== 'int64' && x.data.every((v) => typeof v === 'number'))
    data = (Want as unknown as { from(a: number[]): TensorData }).from(x.data)
  else return bad(`${path}.data must be a ${Want.name} (or an array of numbers)`)
  if (data.length !== n) bad(`${path}.data has ${data.length} values, dims need ${n}`)
  return { dtype, dims: [...dims] as number[], data }
}

function submitParams(x: unknown): SubmitParams {
  if (!isObj(x)) return bad('params must be an object')
  onlyKeys(x, ['model', 'inputs', 'options'], 'params')
  const model = shortString(x.model, 128, 'params.model')
  if (!isObj(x.inputs)) return bad('params.inputs must be an object of named tensors')
  const names = Object.keys(x.inputs)
  if (names.length === 0 || names.length > MAX_INPUTS) bad(`params.inputs must name 1..${MAX_INPUTS} tensors`)
  const inputs: NamedTensors = {}
  for (const name of names)
    inputs[shortString(name, 64, 'input name')] = tensor(x.inputs[name], `params.inputs.${name}`)
  const o = x.options ?? {}
  if (!isObj(o)) return bad('params.options must be an object')
  onlyKeys(o, ['peer', 'timeoutMs', 'persist'], 'params.options')
  const options: SubmitParams['options'] = {}
  if (o.peer !== undefined) options.peer = shortString(o.peer, 128, 'params.options.peer')
  if (o.timeoutMs !== undefined) {
    const t = o.timeoutMs
    options.timeoutMs =
      Number.isSafeInteger(t) && (t as number) > 0 && (t as number) <= 600_000
        ? (t as number)
        : bad('params.options.timeoutMs must be 1..600000')
  }
  if (o.persist !== undefined) {
    options.persist =
      typeof o.persist === 'boolean' ? o.persist : bad('params.options.persist must be a boolean')
  }
  return { model, inputs, options }
}

/** Checks a message from the host page; anything else (other senders' messages included) is refused. */
export function checkHostMessage(data: unknown): Checked<HostRequest> {
  try {
    if (!isObj(data) || data.type !== MESSAGE_TYPE) return bad(`not a ${MESSAGE_TYPE} message`)
    if (data.v !== 1) bad('v must be 1')
    const id = shortString(data.id, 64, 'id')
    const method = HOST_METHODS.includes(data.method as HostMethod)
      ? (data.method as HostMethod)
      : bad(`method must be one of ${HOST_METHODS}`)
    if (method === 'submit') {
      onlyKeys(data, ['type', 'v', 'id', 'method', 'params'], 'message')
      return { ok: true, value: { type: MESSAGE_TYPE, v: 1, id, method, params: submitParams(data.params) } }
    }
    onlyKeys(data, ['type', 'v', 'id', 'method'], 'message')
    return { ok: true, value: { type: MESSAGE_TYPE, v: 1, id, method } }
  } catch (err) {
    if (err instanceof Bad) return { ok: false, why: err.message }
    return { ok: false, why: 'unreadable message' }
  }
}

/** Parses the `origin` query values: exact origins only (scheme://host[:port]), no wildcards. */
export function parseAllowList(values: string[]): string[] {
  const out: string[] = []
  for (const v of values) {
    try {
      const u = new URL(v)
      if ((u.protocol === 'https:' || u.protocol === 'http:') && u.origin === v.replace(/\/$/, ''))
        out.push(u.origin)
    } catch {}
  }
  return [...new Set(out)]
}
