export { createAccessLog, type AccessLog } from './access-log.js';
export { ConnectionEvents, isConnectionEvent, type ConnectionEvent, type ConnectionEventName } from './connection-events.js';
export { ClientInventory, readInventory, type InventoryEntry } from './client-inventory.js';
export { ProbeGuard } from './probe-guard.js';
export { WeakClients, readWeakClients, type WeakClientEntry } from './weak-clients.js';
export { clusterSummaryTexts, requestSummaryFlush, shareSummaries, summaryOwner, type SummaryKind } from './cluster-summaries.js';
export { SharedBlocks } from './shared-blocks.js';
export type { DetectorBlock } from './probe-guard.js';
