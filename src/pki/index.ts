export { ensureLocalCa, issueServerCertificate, type LocalCa, type IssuedPair } from './local-ca.js';
export { x509, pemBlocks } from './x509.js';
export { loadCertificatePair, certificateCovers, describeKey, type CertificatePair, type CertificateProblem } from './certificate-pair.js';
