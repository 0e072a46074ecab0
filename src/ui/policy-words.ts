/** A verification policy said in words, next to its fields: "2 contributors must agree within 1e-4". */
import type { CompareRule, VerificationPolicy } from '../trust/policy.ts'

export function ruleWords(rule: CompareRule): string {
  switch (rule.kind) {
    case 'exact':
      return 'return bit-identical outputs'
    case 'tolerance':
      return rule.atol === rule.rtol
        ? `agree within ${rule.atol}`
        : `agree within ${rule.atol} (absolute) + ${rule.rtol} (relative)`
    case 'argmax':
      return 'pick the same top class'
    case 'topk':
      return `agree on the same top-${rule.k} classes`
  }
}

export function policyWords(
  p: Pick<VerificationPolicy, 'redundancy' | 'quorum' | 'adaptive' | 'compare'>,
): string {
  const who = p.quorum === 1 ? 'one contributor’s answer is accepted alone' : `${p.quorum} contributors must`
  const first =
    p.quorum === 1
      ? `${who} (sent to ${p.redundancy}); use only with peers you trust.`
      : `${who} ${ruleWords(p.compare)}; ${p.redundancy} are asked at first, more if they disagree.`
  return p.adaptive
    ? `${first} Adaptive: a peer with a record of valid results may get a single replica, spot-checked at random.`
    : first
}
