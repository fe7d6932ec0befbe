import type { Config } from '../config/index.js';
import type { Logger } from '../observe/index.js';
import { RedisLink } from '../state/index.js';

/**
 * The cluster's Redis when the config asks for it (`state.backend: redis`),
 * for the control plane and for each worker; refuses to start
 * (PCL_STATE_UNREACHABLE) when it does not answer.
 */
export async function openCluster(config: Config, log: Logger): Promise<RedisLink | null> {
  return config.state.backend === 'redis' ? RedisLink.open(config.state.redis, log) : null;
}
