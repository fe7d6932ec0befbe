import type { ReloadResult } from './reloader.js';

/** What a cluster primary and its workers say to each other over IPC. */
export type ToWorker =
  | { readonly type: 'tickets'; readonly keys: string }
  | { readonly type: 'reload'; readonly id: number }
  | { readonly type: 'drain' };

export type ToPrimary =
  /** Sent first: asks for the ticket keys, after the worker listens for messages. */
  | { readonly type: 'hello' }
  | { readonly type: 'ready'; readonly port: number; readonly httpPort: number | null }
  | { readonly type: 'failed'; readonly code: string; readonly message: string }
  | { readonly type: 'reloaded'; readonly id: number; readonly result: ReloadResult };
