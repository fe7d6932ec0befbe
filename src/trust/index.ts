export { verifyClientCertificate, type ClientCertificate, type ClientCertReason } from './client-certificate.js';
export { identityOf, fingerprintOf, parseSubjectAltName, type ClientIdentity } from './identity.js';
export { compileAllowList, normaliseFingerprint, parseSubjectPattern, type AllowList, type RawAllowList } from './allow-list.js';
export { identityHeaderValue, quoteValue } from './identity-header.js';
