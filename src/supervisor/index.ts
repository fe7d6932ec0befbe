export { fileSource, quickstartSource, type ConfigSource, type FileSource } from './config-source.js';
export { sendControl, type ControlRequest, type ControlAnswer } from './control-socket.js';
export { unsavedRetryMs } from './store-sync.js';
export { runControlPlane } from './control-plane.js';
export { joinClusterBeforeLoad } from './cluster-certificates.js';
export { runWorker } from './worker.js';
export type { ReloadResult } from './reloader.js';
export type { DenyEdit, KeyEdit } from './store-edits.js';
