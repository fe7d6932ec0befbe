export { loadCertificatePair, certificateCovers, describeKey, type CertificateProblem } from './certificate-files.js';
export { SiteContexts, UnknownServerNameError, profileOptions } from './site-contexts.js';
export { TicketKeyRing } from './ticket-keys.js';
export { createTlsServer, baseContextOptions, applyHttpLimits } from './tls-server.js';
export { describeConnection, tagSocket, tagSession, connectionOf, type ConnectionInfo } from './connection-info.js';
export { classifyHandshakeFailure, type HandshakeFailure } from './handshake-failure.js';
