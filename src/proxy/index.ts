export { handleRequest, handleUpgrade } from './handlers.js';
export { UpstreamSet } from './upstreams.js';
export type { ProxyState } from './request-context.js';
export { refuseUnparsable } from './responses.js';
export { ClientVerdicts } from './client-verdicts.js';
