import { X509Certificate, createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { PortcullisError } from '../errors.js';
import { writeFileAtomic } from '../state/index.js';
import { x509 } from './x509.js';

/**
 * The built-in CA: an ECDSA P-256 root kept under `dataDir/ca/` (key mode
 * 0600), created on first use and reused afterwards, and optionally an
 * intermediate under it (`issuing.pem`/`issuing.key`) that then issues every
 * certificate, so that the root key can be kept offline. Keys never leave
 * these files and are never logged.
 */

const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const minute = 60_000;
const day = 86_400_000;

export interface CaKeyPair {
  readonly certFile: string;
  readonly keyFile: string;
  readonly cert: x509.X509Certificate;
  readonly privateKey: webcrypto.CryptoKey;
}

/** The root (the trust anchor clients configure) and the CA that signs leaves and their CRL. */
export interface LocalCa extends CaKeyPair {
  /** The intermediate when there is one, else the root itself. */
  readonly issuing: CaKeyPair;
  /** PEM of what sits between a leaf and the root (the intermediate), to send after the leaf; '' without one. */
  readonly chainPem: string;
}

export interface IssuedPair {
  readonly certPem: string;
  readonly keyPem: string;
}

/**
 * A positive serial number of exactly 16 octets, as hex (RFC 5280 §4.1.2.2
 * allows up to 20): the first octet is 0x01–0x7f, so the DER integer needs
 * no sign octet and drops no leading zero, and the hex we print is the one
 * openssl prints. 127 random bits remain.
 */
function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = 1 + ((bytes[0] as number) % 127);
  return bytes.toString('hex');
}

async function exportKeyPem(key: webcrypto.CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return `${x509.PemConverter.encode(der, 'PRIVATE KEY')}\n`;
}

async function importKeyPem(pem: string): Promise<webcrypto.CryptoKey> {
  const der = createPrivateKey(pem).export({ type: 'pkcs8', format: 'der' });
  return webcrypto.subtle.importKey('pkcs8', der, algorithm, false, ['sign']);
}

/** Loads the CA under `dir`, or creates it when neither file exists. */
export async function ensureLocalCa(dir: string, name = 'Portcullis Local CA'): Promise<LocalCa> {
  const certFile = join(dir, 'ca.pem');
  const keyFile = join(dir, 'ca.key');
  const haveCert = existsSync(certFile);
  const haveKey = existsSync(keyFile);
  if (haveCert && haveKey) return withIssuing(dir, await loadKeyPair(certFile, keyFile));
  if (haveCert || haveKey) {
    throw new PortcullisError(
      'PCL_PKI_STORE_INVALID',
      `${haveCert ? keyFile : certFile} is missing while ${haveCert ? certFile : keyFile} exists; restore it, or delete ${dir} to create a new CA (clients must then trust the new one)`,
    );
  }
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: `CN=${name} ${randomBytes(4).toString('hex')}, O=Portcullis`,
    notBefore: new Date(now - minute),
    notAfter: new Date(now + 3650 * day),
    signingAlgorithm: algorithm,
    keys: keys,
    extensions: [
      // path length 1: room for one intermediate (ca init --intermediate) and no deeper
      new x509.BasicConstraintsExtension(true, 1, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  writeFileAtomic(keyFile, await exportKeyPem(keys.privateKey), 0o600);
  writeFileAtomic(certFile, `${cert.toString('pem')}\n`);
  const root = { certFile, keyFile, cert, privateKey: keys.privateKey };
  return { ...root, issuing: root, chainPem: '' };
}

const issuingFiles = (dir: string) => ({ certFile: join(dir, 'issuing.pem'), keyFile: join(dir, 'issuing.key') });

/** The root with the intermediate under `dir` when there is one (it must be the root's). */
async function withIssuing(dir: string, root: CaKeyPair): Promise<LocalCa> {
  const { certFile, keyFile } = issuingFiles(dir);
  if (!existsSync(certFile) && !existsSync(keyFile)) return { ...root, issuing: root, chainPem: '' };
  const issuing = await loadKeyPair(certFile, keyFile);
  if (!(await issuing.cert.verify({ publicKey: root.cert.publicKey, signatureOnly: true }))) {
    throw new PortcullisError('PCL_PKI_STORE_INVALID', `${certFile} was not issued by the root ${root.certFile}; restore the intermediate of this root, or delete issuing.pem and issuing.key and run portcullis ca init --intermediate`);
  }
  return { ...root, issuing, chainPem: `${issuing.cert.toString('pem')}\n` };
}

/**
 * Adds an intermediate under the root of `dir` (ECDSA P-256, 5 years, path
 * length 0: it can only issue leaves) unless there is one; from then on it
 * signs every certificate and the leaves' CRL.
 */
export async function ensureIntermediate(dir: string): Promise<LocalCa> {
  const ca = await ensureLocalCa(dir);
  if (ca.chainPem) return ca;
  if (ca.cert.getExtension(x509.BasicConstraintsExtension)?.pathLength === 0) {
    throw new PortcullisError(
      'PCL_PKI_STORE_INVALID',
      `the root ${ca.certFile} (made by an earlier version) allows no intermediate under it (path length 0); keep issuing from it, or move ${dir} aside and run ca init --intermediate for a new CA (clients then trust the new root)`,
    );
  }
  const { certFile, keyFile } = issuingFiles(dir);
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: `CN=Portcullis Issuing CA ${randomBytes(4).toString('hex')}, O=Portcullis`,
    issuer: ca.cert.subject,
    notBefore: new Date(now - minute),
    notAfter: new Date(Math.min(now + 1826 * day, ca.cert.notAfter.getTime())),
    signingAlgorithm: algorithm,
    publicKey: keys.publicKey,
    signingKey: ca.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  writeFileAtomic(keyFile, await exportKeyPem(keys.privateKey), 0o600);
  writeFileAtomic(certFile, `${cert.toString('pem')}\n`);
  return withIssuing(dir, ca);
}

async function loadKeyPair(certFile: string, keyFile: string): Promise<CaKeyPair> {
  try {
    const certPem = readFileSync(certFile, 'utf8');
    const keyPem = readFileSync(keyFile, 'utf8');
    if (!new X509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem))) throw new Error('the key does not match the certificate');
    return { certFile, keyFile, cert: new x509.X509Certificate(certPem), privateKey: await importKeyPem(keyPem) };
  } catch (err) {
    throw new PortcullisError('PCL_PKI_STORE_INVALID', `the CA in ${certFile} / ${keyFile} cannot be used (${(err as Error).message}); restore the files or delete them to create a new CA`, {
      cause: err,
    });
  }
}

export interface LeafRequest {
  /** The subject's common name. */
  readonly commonName: string;
  /** DNS names and IP addresses. */
  readonly hosts?: readonly string[];
  readonly uris?: readonly string[];
  readonly usage: 'server' | 'client';
  readonly lifetimeDays: number;
}

export interface SignedLeaf {
  readonly certPem: string;
  /** Hex, as the CA database and the logs print it (upper case). */
  readonly serial: string;
  readonly notAfter: Date;
}

export interface IssuedLeaf extends IssuedPair, SignedLeaf {}

/** RFC 5280 ub-common-name: the most characters a common name may have. */
const maxCommonNameLength = 64;

/**
 * Why the built-in CA will not certify `name` as a common name, or null when
 * it will: empty, longer than RFC 5280 allows, control characters (which
 * would rewrite lines wherever the name is printed), or text that is not
 * Unicode (a lone surrogate cannot be encoded as UTF-8). Any other
 * character is certified as given: "," "=" "+" "#", backslashes and quotes included.
 */
export function commonNameProblem(name: string): string | null {
  if (name.length === 0) return 'is empty; give the name the certificate is for, e.g. billing-api';
  const length = [...name].length;
  if (length > maxCommonNameLength) return `has ${length} characters, more than the ${maxCommonNameLength} RFC 5280 allows in a common name; use a shorter name (longer identifiers belong in a URI SAN, --uri)`;
  const control = controlCharacter.exec(name);
  if (control) return `holds the control character U+${(control[0].codePointAt(0) as number).toString(16).toUpperCase().padStart(4, '0')} at character ${[...name.slice(0, control.index)].length + 1}; use printable characters only`;
  if (loneSurrogate.test(name)) return 'is not valid Unicode (it holds a lone UTF-16 surrogate); give the name as UTF-8 text';
  return null;
}

/** C0, DEL and C1 (Unicode general category Cc). */
const controlCharacter = /\p{Cc}/u;
const loneSurrogate = /\p{Surrogate}/u;

/**
 * The subject of a leaf: one CN holding exactly `commonName`, as a typed
 * value. A plain string, in a DN text or in the JSON form of @peculiar/x509,
 * would be read as RFC 4514 text: quotes and backslash escapes undone, a
 * leading "#" read as hex DER (and "#zz" thrown), "," and "+" starting other
 * attributes. PrintableString when the name fits it (as the library would
 * choose), UTF8String otherwise (RFC 5280 §4.1.2.6).
 */
function subjectOf(commonName: string): x509.Name {
  const value = printableString.test(commonName) ? { printableString: commonName } : { utf8String: commonName };
  return new x509.Name([{ CN: [value] }]);
}

/** X.680 PrintableString: letters, digits, space and '()+,-./:=? */
const printableString = /^[A-Za-z0-9 '()+,\-./:=?]+$/;

/** Issues an ECDSA P-256 leaf signed by the CA, with a fresh key, for a server (serverAuth) or a client (clientAuth). */
export async function issueCertificate(ca: LocalCa, request: LeafRequest): Promise<IssuedLeaf> {
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  return { ...(await signCertificate(ca, request, keys.publicKey)), keyPem: await exportKeyPem(keys.privateKey) };
}

/** Certifies `publicKey` (a fresh key's, or the one a CSR proved possession of) for `request`: names and usage come from the request only. */
export async function signCertificate(ca: LocalCa, request: LeafRequest, publicKey: x509.PublicKey | webcrypto.CryptoKey): Promise<SignedLeaf> {
  const now = Date.now();
  const serial = serialNumber();
  const notAfter = new Date(now + request.lifetimeDays * day);
  const names = [
    ...(request.hosts ?? []).map((h) => ({ type: isIP(h) ? ('ip' as const) : ('dns' as const), value: h })),
    ...(request.uris ?? []).map((u) => ({ type: 'url' as const, value: u })),
  ];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: subjectOf(request.commonName),
    issuer: ca.issuing.cert.subject,
    notBefore: new Date(now - minute),
    notAfter,
    signingAlgorithm: algorithm,
    publicKey,
    signingKey: ca.issuing.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([request.usage === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth]),
      ...(names.length ? [new x509.SubjectAlternativeNameExtension(names)] : []),
      await x509.AuthorityKeyIdentifierExtension.create(ca.issuing.cert),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
    ],
  });
  return { certPem: `${cert.toString('pem')}\n`, serial: serial.toUpperCase(), notAfter };
}

/** Issues an ECDSA P-256 server certificate for `hosts` (DNS names and IPs), signed by the CA. */
export async function issueServerCertificate(ca: LocalCa, hosts: readonly string[], lifetimeDays: number): Promise<IssuedPair> {
  return issueCertificate(ca, { commonName: hosts[0] as string, hosts, usage: 'server', lifetimeDays });
}
