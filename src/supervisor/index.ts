export { fileSource, quickstartSource, type ConfigSource, type FileSource } from './config-source.js';
export { controlSocketPath, sendControl } from './control-socket.js';
export { runPrimary } from './primary.js';
export { runSingle } from './single.js';
export { runWorker } from './worker.js';
export type { ReloadResult } from './reloader.js';
