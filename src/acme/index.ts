export { AcmeManager, type AcmeManagerOptions } from './acme-manager.js';
export { ChallengeBoard, noChallenges, type AcmeChallengeSet } from './challenges.js';
