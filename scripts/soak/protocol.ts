/** The IPC messages between scripts/soak.ts and its proxy harness (scripts/soak/harness.ts). */

export type HarnessRequest =
  | { readonly id: number; readonly type: 'reload' }
  /** `gc`: collect garbage first (the harness runs with --expose-gc), for the before/after comparison. */
  | { readonly id: number; readonly type: 'stats'; readonly gc?: boolean }
  | { readonly id: number; readonly type: 'stop' };

/** A request before the parent numbers it. */
export type HarnessAsk = HarnessRequest extends infer R ? (R extends unknown ? Omit<R, 'id'> : never) : never;

export interface HarnessStats {
  readonly rss: number;
  readonly heapUsed: number;
  readonly external: number;
  readonly arrayBuffers: number;
  /** process.getActiveResourcesInfo(), counted by type (TCPSocketWrap, TLSWrap, Timeout, FSReqCallback …). */
  readonly activeResources: Readonly<Record<string, number>>;
  /** Entries of /proc/self/fd. */
  readonly openFds: number;
  /** The proxy's own count of TCP connections open on its HTTPS listener(s). */
  readonly openConnections: number;
  /** User + system CPU time of the harness so far. */
  readonly cpuMicros: number;
}

export type HarnessReply =
  | { readonly id: 0; readonly type: 'ready'; readonly port: number }
  | { readonly id: number; readonly type: 'reloaded'; readonly ok: true }
  | { readonly id: number; readonly type: 'reloaded'; readonly ok: false; readonly error: string }
  | { readonly id: number; readonly type: 'stats'; readonly stats: HarnessStats }
  | { readonly id: number; readonly type: 'stopped' };
