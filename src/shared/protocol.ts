/** Versioned protocol ids and topics shared by the relay, tabs and tests. */
export const JOB_PROTOCOL = '/peer-compute/job/1.0.0'
export const MODEL_PROTOCOL = '/peer-compute/model/1.0.0'
export const ADVERT_TOPIC = 'peer-compute/adverts/1'
export const SOFTWARE_VERSION = '0.1.0'
