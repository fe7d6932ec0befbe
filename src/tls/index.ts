export { profileOptions } from './context-options.js';
export { SiteServers, type TlsHandlers } from './site-servers.js';
export { TicketKeyRing } from './ticket-keys.js';
export { describeConnection, connectionOf, connectionOfSocket, type ConnectionInfo } from './connection-info.js';
export { classifyHandshakeFailure, type HandshakeFailure } from './handshake-failure.js';
export { OcspStapler, requiresStapling, type OcspCallback, type OcspStaplerOptions } from './ocsp-stapling.js';
export { checkRotation, replacements } from './rotation-checks.js';
export { ExpiryMonitor } from './expiry-monitor.js';
export { AlpnChallengeServers, acmeAlpnProtocol } from './alpn-challenges.js';
