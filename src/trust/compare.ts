/** Decides whether two replicas' outputs agree under a comparison rule. */
import type { NamedTensors, Tensor } from '../shared/tensor.ts'
import { tensorsEqualWithin } from '../shared/tensor-codec.ts'
import type { CompareRule } from './policy.ts'

export interface ReplicaOutputs {
  outputs: NamedTensors
  /** Output CID string from the verified receipt. */
  outputCid: string
}

const sameShape = (a: Tensor, b: Tensor) => a.dtype === b.dtype && a.dims.join() === b.dims.join()

/** Indices of the `k` largest values of each row (last axis), as sorted strings per row. */
function topkRows(t: Tensor, k: number): string[] {
  const width = t.dims.at(-1) ?? t.data.length
  const rows: string[] = []
  for (let start = 0; start < t.data.length; start += Math.max(1, width)) {
    const row = Array.from(t.data.subarray(start, start + width) as ArrayLike<number | bigint>, Number)
    const idx = row.map((_, i) => i).sort((i, j) => row[j]! - row[i]! || i - j)
    rows.push(
      idx
        .slice(0, k)
        .sort((i, j) => i - j)
        .join(','),
    )
  }
  return rows
}

function namesOf(a: NamedTensors, chosen?: string[]): string[] {
  return chosen ?? Object.keys(a).sort()
}

export function outputsAgree(a: ReplicaOutputs, b: ReplicaOutputs, rule: CompareRule): boolean {
  if (a.outputCid === b.outputCid) return true // identical bytes agree under every rule
  switch (rule.kind) {
    case 'exact':
      return false
    case 'tolerance': {
      const names = namesOf(a.outputs)
      if (names.join() !== namesOf(b.outputs).join()) return false
      return names.every((n) => {
        const t = rule.perOutput?.[n] ?? rule
        return tensorsEqualWithin({ [n]: a.outputs[n]! }, { [n]: b.outputs[n]! }, t.atol, t.rtol).equal
      })
    }
    case 'argmax':
    case 'topk': {
      const k = rule.kind === 'argmax' ? 1 : rule.k
      const names = namesOf(a.outputs, rule.outputs)
      return names.every((n) => {
        const x = a.outputs[n]
        const y = b.outputs[n]
        if (!x || !y || !sameShape(x, y)) return false
        return topkRows(x, k).join(';') === topkRows(y, k).join(';')
      })
    }
  }
}

/** Groups replicas into agreement classes (each compared with its class's first member). */
export function agreementGroups<T extends ReplicaOutputs>(replicas: T[], rule: CompareRule): T[][] {
  const groups: T[][] = []
  for (const r of replicas) {
    const g = groups.find((g) => outputsAgree(g[0]!, r, rule))
    if (g) g.push(r)
    else groups.push([r])
  }
  return groups.sort((x, y) => y.length - x.length)
}
