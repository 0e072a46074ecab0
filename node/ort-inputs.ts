/**
 * Checks of a run's inputs, shared by the Node engine (before anything goes to a worker) and its ORT
 * worker (node/ort.worker.ts, against the session itself). InvalidTensorError names the input's fault.
 */
import { InvalidTensorError } from '../src/shared/errors.ts'
import { ARRAY_TYPES, DTYPES, elementCount, type NamedTensors } from '../src/shared/tensor.ts'

/** A model input as an ORT session describes it (InferenceSession.inputMetadata), plain enough to post. */
export interface InputMeta {
  name: string
  isTensor: boolean
  type?: string
  shape?: ReadonlyArray<number | string>
}

/** The metadata as plain objects: what a worker posts once it has created a session. */
export const plainMeta = (meta: readonly InputMeta[]): InputMeta[] =>
  meta.map((m) => ({
    name: m.name,
    isTensor: m.isTensor,
    ...(m.isTensor ? { type: m.type, shape: [...(m.shape ?? [])] } : {}),
  }))

/**
 * Throws InvalidTensorError unless `inputs` are well-formed tensors and, where the model's inputs are
 * known (`meta`), exactly those inputs with their dtypes and fixed dims.
 */
export function checkInputs(inputs: NamedTensors, meta?: readonly InputMeta[]): void {
  if (meta) {
    const names = Object.keys(inputs)
    const missing = meta.filter((m) => !(m.name in inputs)).map((m) => m.name)
    const extra = names.filter((n) => !meta.some((m) => m.name === n))
    if (missing.length || extra.length) {
      throw new InvalidTensorError(`inputs mismatch: missing [${missing}] unexpected [${extra}]`)
    }
  }
  for (const [name, t] of Object.entries(inputs)) {
    const m = meta?.find((x) => x.name === name)
    if (m?.isTensor && m.type !== t.dtype) {
      throw new InvalidTensorError(`input ${name}: dtype ${t.dtype}, model expects ${m.type}`)
    }
    if (!DTYPES.includes(t.dtype) || !(t.data instanceof ARRAY_TYPES[t.dtype])) {
      throw new InvalidTensorError(`input ${name}: data does not hold ${t.dtype}`)
    }
    if (
      !Array.isArray(t.dims) ||
      !t.dims.every((d) => Number.isSafeInteger(d) && d >= 0) ||
      t.data.length !== elementCount(t.dims)
    ) {
      throw new InvalidTensorError(`input ${name}: ${t.data.length} values for dims [${t.dims}]`)
    }
    // Fixed dims checked here: ORT's own message would read as a failed run, not a bad input.
    const shape = m?.isTensor ? (m.shape ?? []) : []
    if (
      shape.length &&
      (shape.length !== t.dims.length ||
        shape.some((d, i) => typeof d === 'number' && d >= 0 && d !== t.dims[i]))
    ) {
      throw new InvalidTensorError(`input ${name}: dims [${t.dims}], the model takes [${shape}]`)
    }
  }
}
