export { writeFileAtomic, writeFileAtomicAsync, StateWriteError } from './atomic-file.js';
export {
  defaultDataDir,
  resolveDataDir,
  denyListFile,
  apiKeysFile,
  controlSocketFile,
  caFolder,
  adminTokenFile,
  adminCertificateFiles,
  quickstartCertificateFiles,
  internalCertificateFiles,
  inventoryFolder,
  inventoryFile,
  weakClientsFolder,
  weakClientsFile,
  stateValueFile,
  acmeCertificateKeys,
  acmeCertificateFiles,
  acmeAccountKeys,
  type CertificateFiles,
} from './data-dir.js';
export { memoryState, type StateBackend, type LockLease } from './state-backend.js';
export { RedisLink, type RedisSettings, type LinkListener } from './redis-link.js';
export { redisState } from './redis-state.js';
export { localAnswers, sharedAnswers, type AnswerRequest, type AnswerSharing, type Obtained, type SharedAnswerKind } from './shared-answers.js';
export { readStoreList } from './json-store.js';
export { memoryRateBuckets, type RateBuckets, type RateDecision } from './rate-buckets.js';
export { LeasedRateBuckets, leaseSizeOf, leaseTtlMs } from './leased-rate-buckets.js';
export {
  readFleet,
  writeInstanceRecord,
  removeInstanceRecord,
  heartbeatMs,
  recordTtlMs,
  fleetSchema,
  type InstanceRecord,
  type ServedCertificate,
  type ReloadOutcomeRecord,
  type FleetRead,
} from './fleet-records.js';
export { compareFleet, servedSerials, type FleetReport, type FleetEntry, type FleetFlag } from './fleet-report.js';
export { execAll } from './redis-exec.js';
export { resyncOnLink, rereadAfterRecoveryMs } from './link-resync.js';
