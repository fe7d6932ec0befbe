export { writeFileAtomic, writeFileAtomicAsync, StateWriteError } from './atomic-file.js';
export { acmeCertificateFiles, acmeCertificateKeys } from './certificate-files.js';
export { memoryState, type StateBackend } from './state-backend.js';
export { readStoreList } from './json-store.js';
export { memoryRateBuckets, type RateBuckets, type RateDecision } from './rate-buckets.js';
