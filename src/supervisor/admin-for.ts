import { AdminListener } from '../admin/index.js';
import type { Config } from '../config/index.js';
import type { Logger, SupervisorMetrics } from '../observe/index.js';

/** Opens the admin listener when `listen.admin` is configured; `scrape` gathers the metrics of the whole instance. */
export function openAdmin(config: Config, log: Logger, metrics: SupervisorMetrics, scrape: () => Promise<string>): Promise<AdminListener | null> {
  if (!config.listen.admin) return Promise.resolve(null);
  return AdminListener.open({ address: config.listen.admin, dataDir: config.dataDir, profile: config.tls.profile, log, metrics, scrape });
}
