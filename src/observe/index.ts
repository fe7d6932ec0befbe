export { createLogger, type Level, type Logger } from './logger.js';
export { Metrics } from './metrics.js';
export { SupervisorMetrics } from './supervisor-metrics.js';
export { EventBus, type EventLevel, type EventListener, type TelemetryEvent } from './event-bus.js';
export { StateBackendMetrics } from './state-backend-metrics.js';
