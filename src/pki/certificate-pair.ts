import { readFileSync } from 'node:fs';
import { createPrivateKey, type KeyObject, type X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { decodeCertificate, PemError, pemBlocks, x509, type PemBlock } from './x509.js';

/** A certificate chain and its private key, read and checked. */
export interface CertificatePair {
  readonly certFile: string;
  readonly keyFile: string;
  /** Leaf first, then intermediates, as read. */
  readonly chainPem: string;
  readonly keyPem: string;
  readonly leaf: X509Certificate;
  /** "ECDSA P-256", "RSA 2048" … */
  readonly keyDescription: string;
}

/** A problem with one of the two files; `field` is the config key it belongs to. */
export interface CertificateProblem {
  readonly field: 'cert' | 'key';
  readonly message: string;
}

export type CertificateLoad = { ok: true; certificate: CertificatePair } | { ok: false; problems: CertificateProblem[] };

const purposes = {
  server: { oid: '1.3.6.1.5.5.7.3.1', name: 'serverAuth' },
  client: { oid: '1.3.6.1.5.5.7.3.2', name: 'clientAuth' },
} as const;
const anyExtendedKeyUsageOid = '2.5.29.37.0';

/** "ECDSA P-256", "RSA 2048", "Ed25519". */
export function describeKey(key: KeyObject): string {
  const d = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'ec': {
      const curve = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' }[d.namedCurve ?? ''] ?? d.namedCurve;
      return `ECDSA ${curve}`;
    }
    case 'rsa':
    case 'rsa-pss':
      return `${key.asymmetricKeyType === 'rsa' ? 'RSA' : 'RSA-PSS'} ${d.modulusLength}`;
    case 'ed25519':
      return 'Ed25519';
    default:
      return String(key.asymmetricKeyType);
  }
}

function keyStrengthProblem(key: KeyObject): string | null {
  const d = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'ec':
      return ['prime256v1', 'secp384r1', 'secp521r1'].includes(d.namedCurve ?? '')
        ? null
        : `the ${d.namedCurve} curve is not accepted; use an ECDSA P-256 or P-384 key`;
    case 'rsa':
    case 'rsa-pss':
      return (d.modulusLength ?? 0) >= 2048 ? null : `an RSA key of ${d.modulusLength} bits is too weak; use at least 2048 bits (or ECDSA P-256)`;
    case 'ed25519':
      return null;
    default:
      return `${key.asymmetricKeyType} keys are not accepted; use ECDSA P-256/P-384 or RSA ≥ 2048`;
  }
}

function subjectOf(cert: X509Certificate): string {
  return cert.subject.split('\n').join(', ') || '(empty subject)';
}

function readText(file: string): { text?: string; error?: string } {
  try {
    return { text: readFileSync(file, 'utf8') };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { error: `file ${file} does not exist; check the path (relative paths start at the config file's folder)` };
    if (code === 'EACCES') return { error: `file ${file} is not readable by this process; fix its permissions` };
    return { error: `cannot read ${file}: ${(err as Error).message}` };
  }
}

/** The PEM blocks of a certificate or key file; null when it is cut off inside a block, which is reported. */
function readBlocks(text: string, file: string, report: (message: string) => void): PemBlock[] | null {
  try {
    return pemBlocks(text, file);
  } catch (err) {
    if (!(err instanceof PemError)) throw err;
    report(err.message);
    return null;
  }
}

/** True when `cert` carries exactly this name: wildcard hosts need the wildcard SAN itself. */
export function certificateCovers(cert: X509Certificate, host: string): boolean {
  if (isIP(host)) return cert.checkIP(host) !== undefined;
  if (host.startsWith('*.')) {
    const sans = (cert.subjectAltName ?? '').split(', ');
    return sans.includes(`DNS:${host}`);
  }
  return cert.checkHost(host, { subject: 'never' }) !== undefined;
}

/**
 * Reads and checks a certificate chain and its key: both parse, the key is
 * unencrypted and matches the leaf, the chain is in order (each certificate
 * issued and signed by the next), the leaf is valid now and its extended key
 * usage allows `purpose`, keys are strong enough and nothing is signed with SHA-1.
 * Never throws: every problem comes back with the field it concerns.
 */
export function loadCertificatePair(certFile: string, keyFile: string, purpose: 'server' | 'client', now = new Date()): CertificateLoad {
  const problems: CertificateProblem[] = [];
  const cert = (message: string) => problems.push({ field: 'cert', message });
  const key = (message: string) => problems.push({ field: 'key', message });

  const certText = readText(certFile);
  const keyText = readText(keyFile);
  if (certText.error) cert(certText.error);
  if (keyText.error) key(keyText.error);
  if (certText.text === undefined || keyText.text === undefined) return { ok: false, problems };

  const blocks = readBlocks(certText.text, certFile, cert);
  if (!blocks) return { ok: false, problems };
  const certBlocks = blocks.filter((b) => b.label === 'CERTIFICATE');
  if (blocks.some((b) => b.label.includes('PRIVATE KEY'))) {
    cert(`${certFile} contains a private key; keep only certificates in cert: and point key: at the key file`);
  }
  if (certBlocks.length === 0) {
    cert(`${certFile} holds no PEM certificate ("-----BEGIN CERTIFICATE-----"); convert DER with: openssl x509 -in FILE -inform der -out FILE.pem`);
    return { ok: false, problems };
  }
  const chain: X509Certificate[] = [];
  for (const [i, block] of certBlocks.entries()) {
    const decoded = decodeCertificate(block.pem);
    if (!decoded.ok) {
      cert(`certificate #${i + 1} in ${certFile} ${decoded.problem}; write the chain again from its source (PEM, leaf first), or reissue the certificate`);
      return { ok: false, problems };
    }
    chain.push(decoded.cert);
  }
  const leaf = chain[0] as X509Certificate;

  let privateKey: KeyObject | undefined;
  let keyBlocks: PemBlock[] = [];
  let keyCutOff = false;
  try {
    keyBlocks = pemBlocks(keyText.text, keyFile).filter((b) => b.label.includes('PRIVATE KEY'));
  } catch (err) {
    if (!(err instanceof PemError)) throw err;
    keyCutOff = true;
    const complete = err.blocks.filter((b) => b.label.includes('PRIVATE KEY')).length;
    key(
      err.label.includes('PRIVATE KEY')
        ? `${keyFile} must hold exactly one PEM private key, found ${complete}: it stops inside ${complete > 0 ? 'another' : 'one'} (${err.detail}), so the file is truncated; write the whole file again`
        : err.message,
    );
  }
  if (keyCutOff) {
    // reported above
  } else if (keyBlocks.length !== 1) {
    key(`${keyFile} must hold exactly one PEM private key, found ${keyBlocks.length}`);
  } else if ((keyBlocks[0] as { label: string }).label === 'ENCRYPTED PRIVATE KEY' || /Proc-Type: 4,ENCRYPTED/.test(keyText.text)) {
    key(`${keyFile} is encrypted with a passphrase; store it unencrypted with mode 0600 (openssl pkey -in KEY -out KEY.plain)`);
  } else {
    try {
      privateKey = createPrivateKey((keyBlocks[0] as { pem: string }).pem);
    } catch (err) {
      key(`${keyFile} does not parse as a private key (${(err as Error).message})`);
    }
  }

  if (privateKey) {
    if (!leaf.checkPrivateKey(privateKey)) {
      key(
        `key does not match certificate ${certFile} (certificate is ${describeKey(leaf.publicKey)}, key is ${describeKey(privateKey)}); point key: at the matching private key`,
      );
    }
    const weak = keyStrengthProblem(privateKey);
    if (weak) key(weak);
  }

  for (let i = 0; i + 1 < chain.length; i++) {
    const child = chain[i] as X509Certificate;
    const parent = chain[i + 1] as X509Certificate;
    if (!child.checkIssued(parent)) {
      cert(
        `${certFile} is not in chain order: certificate #${i + 2} (${subjectOf(parent)}) did not issue #${i + 1} (${subjectOf(child)}); order the file leaf first, then its issuer, then that issuer's issuer`,
      );
      break;
    }
    // names match but the signature does not: a corrupted byte, or a CA re-keyed under the same name
    if (!child.verify(parent.publicKey)) {
      cert(
        `the signature of certificate #${i + 1} (${subjectOf(child)}) in ${certFile} does not verify with the key of #${i + 2} (${subjectOf(parent)}): the file is corrupted, or #${i + 2} is another CA of the same name; write the chain again from its source`,
      );
      break;
    }
  }

  if (now < new Date(leaf.validFrom)) cert(`certificate ${certFile} is not valid before ${leaf.validFrom}; check the clock or reissue it`);
  if (now > new Date(leaf.validTo)) cert(`certificate ${certFile} expired on ${leaf.validTo}; renew it`);
  const eku = leaf.keyUsage;
  const wanted = purposes[purpose];
  if (eku && eku.length > 0 && !eku.includes(wanted.oid) && !eku.includes(anyExtendedKeyUsageOid)) {
    cert(`certificate ${certFile} lacks the ${wanted.name} extended key usage (it has ${eku.join(', ')}); reissue it for TLS ${purpose}s`);
  }
  for (const [i, c] of chain.entries()) {
    if (i > 0 && c.checkIssued(c)) continue; // a root's self-signature is never checked by clients
    const algorithm = new x509.X509Certificate(c.raw).signatureAlgorithm as { hash?: { name?: string } };
    const hash = algorithm.hash?.name;
    if (hash === 'SHA-1' || hash === 'MD5') {
      cert(`certificate #${i + 1} in ${certFile} (${subjectOf(c)}) is signed with ${hash}, which clients reject; reissue it with SHA-256`);
    }
  }

  if (problems.length > 0 || !privateKey) return { ok: false, problems };
  return {
    ok: true,
    certificate: {
      certFile,
      keyFile,
      chainPem: certBlocks.map((b) => b.pem).join(''),
      keyPem: (keyBlocks[0] as PemBlock).pem,
      leaf,
      keyDescription: describeKey(privateKey),
    },
  };
}
