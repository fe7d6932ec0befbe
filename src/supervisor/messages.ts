import type { ApiKeyRecord } from '../access/index.js';
import type { AcmeChallengeSet } from '../acme/index.js';
import type { DenyEntry } from '../trust/index.js';
import type { PlaneState, RegistryMetrics } from './data-plane.js';

/**
 * What a worker fleet asks of each worker, and what each answers. Every
 * request travels as one `Ask` and is confirmed by one `Answer` with its id,
 * so the primary handles them all alike: it waits for every worker's answer,
 * or for its exit, or for a timeout. Workers build their config from the
 * text the primary validated (`generation` counts accepted configs), never
 * from the file on their own.
 */
export interface WorkerOps {
  apply: { arg: { readonly text: string; readonly generation: number }; answer: null };
  /** `closed`: the open connections the list closed. */
  denyList: { arg: readonly DenyEntry[]; answer: { readonly closed: number } };
  apiKeys: { arg: readonly ApiKeyRecord[]; answer: null };
  acmeChallenges: { arg: AcmeChallengeSet; answer: null };
  /** Writes the worker's summaries under dataDir now. */
  flush: { arg: null; answer: null };
  /** The worker's registry, for a scrape of the admin listener, which the primary aggregates. */
  metrics: { arg: null; answer: RegistryMetrics };
}

export type WorkerOp = keyof WorkerOps;

export type Ask = { [K in WorkerOp]: { readonly type: 'ask'; readonly id: number; readonly op: K; readonly arg: WorkerOps[K]['arg'] } }[WorkerOp];

export type Answer =
  | { readonly type: 'answer'; readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly type: 'answer'; readonly id: number; readonly ok: false; readonly code: string; readonly message: string };

export type ToWorker =
  /** The answer to hello: ticket keys, the accepted config text and the state to serve with. */
  | { readonly type: 'start'; readonly keys: string; readonly text: string; readonly generation: number; readonly state: PlaneState }
  | { readonly type: 'tickets'; readonly keys: string }
  | { readonly type: 'drain' }
  | Ask;

export type ToPrimary =
  /** Sent first: asks for ticket keys and config, once the worker listens for messages. */
  | { readonly type: 'hello' }
  | { readonly type: 'ready'; readonly generation: number; readonly port: number; readonly httpPort: number | null }
  | { readonly type: 'failed'; readonly code: string; readonly message: string }
  | Answer;
