/** A lying contributor's trace for dispute tests: one node's outputs changed, every later node run on them. */
import type { DisputePlan } from '../../src/dispute/commit.ts'
import { leafNode, leafOutputs } from '../../src/dispute/commit.ts'
import { singleNodeModel } from '../../src/dispute/onnx-graph.ts'
import type { NamedTensors, Tensor } from '../../src/shared/tensor.ts'
import { ortRun } from './ort-run.ts'

/** `change` applied to leaf `position`'s outputs, every later node recomputed on that (onnxruntime-node). */
export async function lyingTrace(
  plan: DisputePlan,
  honest: NamedTensors,
  jobInputs: NamedTensors,
  position: number,
  change: (t: Tensor) => Tensor,
): Promise<NamedTensors> {
  const out = { ...honest }
  const changed = new Set(leafOutputs(leafNode(plan, position)))
  for (const name of changed) out[name] = change(honest[name]!)
  for (let p = position + 1; p < plan.leaves.length; p++) {
    const node = leafNode(plan, p)
    if (!node.inputs.some((i) => changed.has(i.name))) continue
    const feeds: NamedTensors = {}
    for (const i of node.inputs) {
      if (i.source.kind === 'node') feeds[i.name] = out[i.name]!
      else if (i.source.kind === 'input') feeds[i.name] = jobInputs[i.name]!
    }
    const specs = Object.entries(feeds).map(([name, t]) => ({ name, dtype: t.dtype, dims: t.dims }))
    Object.assign(out, await ortRun(singleNodeModel(plan.model, node.index, specs), feeds))
    for (const o of leafOutputs(node)) changed.add(o)
  }
  return out
}

/** A float32 tensor with `by` added to every value. */
export const shifted =
  (by: number) =>
  (t: Tensor): Tensor => ({ ...t, data: (t.data as Float32Array).map((v) => v + by) })
