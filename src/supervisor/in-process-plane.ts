import { collectDefaultMetrics } from 'prom-client';
import { formatHostPort } from '../config/index.js';
import { startPortcullis } from '../instance/index.js';
import type { Logger } from '../observe/index.js';
import type { RedisLink } from '../state/index.js';
import type { TicketKeyRing } from '../tls/index.js';
import { accessLogFor, reopenAccessLog } from './access-log-for.js';
import type { ConfigGeneration, DataPlane, PlaneState } from './data-plane.js';

export interface InProcessOptions {
  /** Ticket keys managed elsewhere (a worker gets its primary's); without them the instance rotates its own. */
  readonly tickets?: TicketKeyRing;
  /** Names this process's summary files under dataDir ("main", "worker-<id>"). */
  readonly processName?: string;
  /** Adds the process metrics (CPU, memory, event loop) to the instance's registry: a worker's, which the primary sums. */
  readonly processMetrics?: boolean;
  /** The cluster's Redis, with `state.backend: redis`: this process's connection (the caller closes it). */
  readonly cluster?: RedisLink | null;
}

/** Serves in this process: one instance, with the access log its config asks for (reopened after every reload, for logrotate). */
export async function startInProcessPlane(initial: ConfigGeneration, state: PlaneState, log: Logger, options: InProcessOptions = {}): Promise<DataPlane> {
  const access = accessLogFor(initial.config, log);
  const proxy = await startPortcullis(initial.config, log, { ...options, accessLog: access, denyList: state.denyList, apiKeys: state.apiKeys, acmeChallenges: state.challenges });
  if (options.processMetrics) collectDefaultMetrics({ register: proxy.metrics.registry });
  return {
    listening: {
      port: proxy.address.port,
      httpPort: proxy.httpAddress?.port ?? null,
      https: formatHostPort(proxy.address.address, proxy.address.port),
      http: proxy.httpAddress ? formatHostPort(proxy.httpAddress.address, proxy.httpAddress.port) : null,
      workers: null,
    },
    async apply(next) {
      await proxy.reload(next.config);
      reopenAccessLog(access, log);
    },
    setDenyList: async (entries) => ({ processes: 1, closed: proxy.setDenyList(entries) }),
    async setApiKeys(records) {
      proxy.setApiKeys(records);
      return { processes: 1 };
    },
    setAcmeChallenges: async (set) => proxy.setAcmeChallenges(set),
    async flush() {
      await proxy.flushSummaries();
      return { processes: 1 };
    },
    metrics: async () => [await proxy.metrics.registry.getMetricsAsJSON()],
    async drain(deadlineMs) {
      await proxy.drain(deadlineMs);
      await access?.flush();
    },
    close: () => proxy.close(),
  };
}
