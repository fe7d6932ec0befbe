export { commonNameProblem, ensureIntermediate, ensureLocalCa, issueCertificate, issueServerCertificate, signCertificate, type SignedLeaf, type LocalCa, type IssuedPair, type IssuedLeaf, type LeafRequest } from './local-ca.js';
export { CaReplica, type Pulled as CaPulled } from './ca-replica.js';
export { clusterCaReplica, followClusterCa } from './cluster-ca.js';
export { CaStore, caCrlFiles, EnrollmentError, revocationReasons, type EnrollmentRecord, type EnrollmentRefusal, type IssuedRecord, type RevocationReason } from './ca-store.js';
export { x509, pemBlocks, decodeCertificate, PemError, type PemBlock } from './x509.js';
export { loadCertificatePair, certificateCovers, describeKey, type CertificatePair, type CertificateProblem } from './certificate-pair.js';
export { buildPkcs12 } from './pkcs12.js';
export { ensureIssuedCertificate, internalLifetimeDays, type IssuedFiles } from './issued-certificate.js';
export { requestedPublicKey, CsrError, type CsrRefusal } from './certificate-request.js';
