export { clientCertReasonOf, verifyClientCertificate, type ClientCertificate, type ClientCertReason } from './client-certificate.js';
export { identityOf, fingerprintOf, parseSubjectAltName, rfc4514, type ClientIdentity } from './identity.js';
export { compileAllowList, hasAmbiguousEncoding, normaliseFingerprint, parseSubjectPattern, type AllowList, type RawAllowList } from './allow-list.js';
export { identityHeaderValue, quoteValue } from './identity-header.js';
export { parseCrl, CrlError, normaliseSerial } from './crl.js';
export { DenyList, denyEntry, denyKey, type DenyEntry } from './deny-list.js';
export { RevocationChecker, type RevocationDecision, type RevocationSource, type CertificateRef } from './revocation-checker.js';
export { fetchBounded, FetchError, type FetchLimits } from './fetch-bounded.js';
export { maxAgeWithoutNextUpdateMs, OcspError, ocspResponderOf, queryOcsp, verifyOcspResponse, type OcspAnswer } from './ocsp.js';
