import { AcmeManager, ChallengeBoard, type AcmeChallengeSet } from '../acme/index.js';
import type { Config } from '../config/index.js';
import { memoryState } from '../state/index.js';
import type { Logger, SupervisorMetrics } from '../observe/index.js';
import type { ReloadResult } from './reloader.js';

/**
 * The ACME manager of an instance, run by the supervising process:
 * `publish` puts challenge answers in place on the listeners (resolving once
 * they answer), `reload` applies a newly issued certificate through the
 * pre-swap checks.
 */
export function startAcme(config: Config, log: Logger, metrics: SupervisorMetrics, publish: (set: AcmeChallengeSet) => Promise<void>, reload: () => Promise<ReloadResult>): AcmeManager {
  const manager = new AcmeManager({ state: memoryState(config.dataDir), board: new ChallengeBoard(publish), log, metrics, issued: reload });
  manager.apply(config);
  return manager;
}
