export { createLogger, type Level, type Logger } from './logger.js';
export { createAccessLog, type AccessLog } from './access-log.js';
export { Metrics } from './metrics.js';
export { SupervisorMetrics } from './supervisor-metrics.js';
export { recordClientAuthFailure } from './client-auth-events.js';
export { ClientInventory, readInventory, inventoryFolder, type InventoryEntry } from './client-inventory.js';
export { ProbeGuard } from './probe-guard.js';
