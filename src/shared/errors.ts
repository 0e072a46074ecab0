/**
 * Named error classes. Callers branch on `err.name`: it is the only field that survives
 * comlink and the wire, so never rely on `instanceof` across a boundary.
 */
export class PeerComputeError extends Error {
  constructor(message: string, name: string) {
    super(message)
    this.name = name
  }
}

/**
 * Anything thrown, in words. A WebRTC data channel that closes before it opens fails its libp2p
 * stream with a bare Event, which has no message.
 */
export function describeError(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`
  const type = (e as { type?: unknown })?.type
  return typeof type === 'string' ? `'${type}' event` : String(e)
}

/** Every named class, by name: an error that crossed a boundary is rebuilt as its own class. */
const byName = new Map<string, new (message: string) => PeerComputeError>()

const named = (name: string) => {
  const cls = class extends PeerComputeError {
    static readonly NAME = name
    constructor(message: string) {
      super(message, name)
    }
  }
  byName.set(name, cls)
  return cls
}

/** An error of the named class (PeerComputeError for a name this module does not know). */
export function namedError(name: string, message: string): PeerComputeError {
  const cls = byName.get(name)
  return cls ? new cls(message) : new PeerComputeError(message, name)
}

// wire and codecs
export const FrameTooLargeError = named('FrameTooLargeError')
export const MalformedFrameError = named('MalformedFrameError')
/** A peer's streams or partial frames would pass what this node holds for one peer (src/net/inbound.ts). */
export const InboundLimitError = named('InboundLimitError')
export const InvalidTensorError = named('InvalidTensorError')
// trust
export const InvalidSignatureError = named('InvalidSignatureError')
export const InvalidReceiptError = named('InvalidReceiptError')
export const OutputMismatchError = named('OutputMismatchError')
// jobs
export const JobRejectedError = named('JobRejectedError')
export const JobTimeoutError = named('JobTimeoutError')
export const NoPeerAvailableError = named('NoPeerAvailableError')
/** Contributors are known, but no direct WebRTC link to any of them could be made (no STUN/TURN?). */
export const NoDirectPathError = named('NoDirectPathError')
/** The job stream failed before the job was handed to it: the contributor never had it. */
export const JobNotSentError = named('JobNotSentError')
export const AbortError = named('AbortError')
// models and compute
export const UnknownModelError = named('UnknownModelError')
export const ModelIntegrityError = named('ModelIntegrityError')
export const InferenceError = named('InferenceError')
/** None of the execution providers asked for (`contribute --ep`) works on this machine. */
export const ExecutionProviderError = named('ExecutionProviderError')
// network
export const RelayUnavailableError = named('RelayUnavailableError')
export const InvalidPolicyError = named('InvalidPolicyError')
export const InvalidOptionError = named('InvalidOptionError')
// model hub
export const NotOnnxError = named('NotOnnxError')
export const ModelTooLargeError = named('ModelTooLargeError')
export const ModelTransferError = named('ModelTransferError')
export const QuorumNotMetError = named('QuorumNotMetError')
export const JobFailedError = named('JobFailedError')
export const JobInconclusiveError = named('JobInconclusiveError')
// contributing and credit
export const JobHandedBackError = named('JobHandedBackError')
export const InvalidCreditLogError = named('InvalidCreditLogError')
export const StorageBlockedError = named('StorageBlockedError')
/** Another live process has a Node peer's store folder open (node/store). */
export const StoreLockedError = named('StoreLockedError')
// disputes (src/dispute/)
/** An ONNX model could not be edited as asked (no such node, an input without a type). */
export const OnnxEditError = named('OnnxEditError')
/** A dispute party's answer does not hash to what it committed to (its root or a checked tree node). */
export const DisputeProofError = named('DisputeProofError')
/** A tensor a dispute party sent does not match its own commitment to it. */
export const DisputeCommitmentError = named('DisputeCommitmentError')
/** A dispute party's answer has the wrong shape for the question (size, node, names). */
export const DisputeAnswerError = named('DisputeAnswerError')
/** Two commitments with nothing to settle: no node's outputs differ. */
export const NoDivergenceError = named('NoDivergenceError')
export const InvalidDisputeRecordError = named('InvalidDisputeRecordError')
/** A remote dispute party answered a question with an `error` frame: a transport failure, not a proven lie. */
export const PartyRefusedError = named('PartyRefusedError')
/** A remote dispute party sent no answer within the deadline. */
export const PartyTimeoutError = named('PartyTimeoutError')
