/** Versioned protocol ids and topics shared by the relay, tabs and tests. */
/** A stream carries sequential jobs (request, answer, request…) until either side closes it. */
export const JOB_PROTOCOL = '/peer-compute/job/1.1.0'
export const MODEL_PROTOCOL = '/peer-compute/model/1.0.0'
/**
 * 2: gossipsub messages are unsigned (StrictNoSign): an advert carries its own Ed25519 signature, so
 * gossipsub's was a second sign and verify at every hop. /1 peers (signed) cannot read /2 ones.
 */
export const ADVERT_TOPIC = 'peer-compute/adverts/2'
export const SOFTWARE_VERSION = '0.1.0'
/** Disputes (src/dispute/wire.ts): a requester asks a contributor about the trace it committed to. */
export const DISPUTE_PROTOCOL = '/peer-compute/dispute/2.0.0'
/** A relay's latest advert of every peer it forwarded one for: a newcomer's first view of the swarm. */
export const ADVERTS_PROTOCOL = '/peer-compute/adverts/1.0.0'
