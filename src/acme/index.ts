export { AcmeManager, type AcmeManagerOptions } from './acme-manager.js';
export { ChallengeBoard, noChallenges, type AcmeChallengeSet } from './challenges.js';
export { SharedAcmeCertificates } from './shared-certificates.js';
export { SharedChallenges } from './shared-challenges.js';
