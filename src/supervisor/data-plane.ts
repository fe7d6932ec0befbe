import type { ApiKeyRecord } from '../access/index.js';
import type { AcmeChallengeSet } from '../acme/index.js';
import type { Config } from '../config/index.js';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { DenyEntry } from '../trust/index.js';

/** An accepted config: the object, the text it was built from (null for the quickstart), and its number (1 at start). */
export interface ConfigGeneration {
  readonly config: Config;
  readonly text: string | null;
  readonly generation: number;
}

/** The state every serving process starts with and keeps in force: what the stores under dataDir hold, and the ACME challenges. */
export interface PlaneState {
  readonly denyList: readonly DenyEntry[];
  readonly apiKeys: readonly ApiKeyRecord[];
  readonly challenges: AcmeChallengeSet;
}

/** One registry's metrics as prom-client exports them: what the control plane aggregates into a scrape. */
export type RegistryMetrics = MetricObjectWithValues<MetricValue<string>>[];

/** Where a data plane serves: for the "listening" line and the CLI's banner. */
export interface Listening {
  readonly port: number;
  readonly httpPort: number | null;
  /** "127.0.0.1:8443": the HTTPS listener, and the redirect listener when there is one. */
  readonly https: string;
  readonly http: string | null;
  /** The number of worker processes; null when the control plane's own process serves. */
  readonly workers: number | null;
}

/** How many serving processes confirmed a change. */
export interface Applied {
  readonly processes: number;
}

/**
 * What the control plane can ask of the processes that serve traffic: one
 * instance in this process (`in-process-plane.ts`) or a fleet of workers
 * (`worker-fleet.ts`). Every change resolves once it is in force everywhere
 * and says what it did, or rejects with a PortcullisError naming where it
 * could not be applied.
 */
export interface DataPlane {
  readonly listening: Listening;
  /** Serves `next` from now on; rejects (PCL_RELOAD_FAILED) when it cannot, the previous config still serving. */
  apply(next: ConfigGeneration): Promise<void>;
  /** Puts a deny list in force; `closed`: the open connections that presented a listed certificate, closed at once. */
  setDenyList(entries: readonly DenyEntry[]): Promise<Applied & { readonly closed: number }>;
  setApiKeys(records: readonly ApiKeyRecord[]): Promise<Applied>;
  /** The ACME challenge answers to give from now on; resolves once every listener has them (a worker that did not confirm is logged, not fatal). */
  setAcmeChallenges(set: AcmeChallengeSet): Promise<void>;
  /** Writes the per-process summaries under dataDir now. */
  flush(): Promise<Applied>;
  /** The metrics of every serving process (one that does not answer in time is left out). */
  metrics(): Promise<RegistryMetrics[]>;
  /** Stops accepting, lets in-flight requests finish within `deadlineMs`, then stops. */
  drain(deadlineMs: number): Promise<void>;
  /** Stops at once (a start that failed half way). */
  close(): Promise<void>;
}
