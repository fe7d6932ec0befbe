import type { ApiKeyRecord } from '../access/index.js';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { AcmeChallengeSet } from '../acme/index.js';
import type { DenyEntry } from '../trust/index.js';
import type { ReloadResult } from './reloader.js';

/**
 * What a cluster primary and its workers say to each other over IPC. Workers
 * build their config from the text the primary validated (`generation` counts
 * accepted configs), never from the file on their own.
 */
export type ToWorker =
  | { readonly type: 'start'; readonly keys: string; readonly text: string; readonly generation: number; readonly denyList: readonly DenyEntry[]; readonly apiKeys: readonly ApiKeyRecord[]; readonly challenges: AcmeChallengeSet }
  /** ACME challenge answers to serve from now on; answered with done. */
  | { readonly type: 'acme-challenges'; readonly id: number; readonly set: AcmeChallengeSet }
  /** The deny list in force from now on; answered with done, counting the open connections it closed. */
  | { readonly type: 'deny-list'; readonly id: number; readonly entries: readonly DenyEntry[] }
  /** The API keys in force from now on; answered with done. */
  | { readonly type: 'api-keys'; readonly id: number; readonly records: readonly ApiKeyRecord[] }
  | { readonly type: 'tickets'; readonly keys: string }
  | { readonly type: 'reload'; readonly id: number; readonly text: string; readonly generation: number }
  | { readonly type: 'metrics'; readonly id: number }
  /** Write the summaries under dataDir now; answered with done. */
  | { readonly type: 'flush'; readonly id: number }
  | { readonly type: 'drain' };

export type ToPrimary =
  /** Sent first: asks for ticket keys and config, once the worker listens for messages. */
  | { readonly type: 'hello' }
  | { readonly type: 'ready'; readonly generation: number; readonly port: number; readonly httpPort: number | null }
  | { readonly type: 'failed'; readonly code: string; readonly message: string }
  | { readonly type: 'reloaded'; readonly id: number; readonly result: ReloadResult }
  /** The worker's registry for a scrape of the admin listener, which the primary aggregates. */
  | { readonly type: 'metrics'; readonly id: number; readonly metrics: WorkerMetrics }
  /** A request carried out (`closed`: the open connections a deny list closed). */
  | { readonly type: 'done'; readonly id: number; readonly closed: number };

export type WorkerMetrics = MetricObjectWithValues<MetricValue<string>>[];
