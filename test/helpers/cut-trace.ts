/** A traced job for the dispute-over-cuts tests: a public model's plan, CIDs, honest and lying traces. */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { disputePlan } from '../../src/dispute/commit.ts'
import type { CutJob } from '../../src/dispute/cut-commit.ts'
import { cutPlan } from '../../src/dispute/cuts.ts'
import { withIntermediateOutputs } from '../../src/dispute/onnx-graph.ts'
import { modelCid } from '../../src/shared/cid.ts'
import type { NamedTensors } from '../../src/shared/tensor.ts'
import { tensorsCid } from '../../src/shared/tensor-codec.ts'
import { lyingTrace, shifted } from './liar-trace.ts'
import { ortRun } from './ort-run.ts'

const models = resolve(import.meta.dirname, '../../public/models')

/** `file` (under public/models) traced on `inputs`; traces include the inputs: cut -1 is them. */
export async function tracedJob(file: string, inputs: NamedTensors) {
  const bytes = new Uint8Array(readFileSync(resolve(models, file)))
  const plan = disputePlan(bytes)
  const job: CutJob = {
    job: await modelCid(new TextEncoder().encode(`job ${file}`)),
    model: await modelCid(bytes),
    input: await tensorsCid(inputs),
  }
  const honest = { ...inputs, ...(await ortRun(withIntermediateOutputs(plan.model), inputs)) }
  /** The trace of a liar that shifts leaf `at`'s outputs by `by`, and computes honestly from there. */
  const liar = async (at: number, by: number) => ({
    ...inputs,
    ...(await lyingTrace(plan, honest, inputs, at, shifted(by))),
  })
  return { plan, cp: cutPlan(plan), job, inputs, honest, liar }
}
