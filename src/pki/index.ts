export { ensureLocalCa, issueServerCertificate, type LocalCa, type IssuedPair } from './local-ca.js';
export { x509, pemBlocks } from './x509.js';
