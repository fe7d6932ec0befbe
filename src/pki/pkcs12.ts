import { X509Certificate, createHash, createPrivateKey, createPublicKey, webcrypto } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { pemBlocks } from './x509.js';

// pkijs 4 installs a global engine from globalThis.crypto when imported; ours is passed
// explicitly, so this module does not depend on (or change) that process-wide setting.
// Node's webcrypto is the standard Crypto interface that pkijs types as lib.dom's Crypto
type DomCrypto = pkijs.CryptoEngineParameters['crypto'];
const engine = new pkijs.CryptoEngine({ name: 'node', crypto: webcrypto as unknown as DomCrypto });

const oid = {
  pkcs8ShroudedKeyBag: '1.2.840.113549.1.12.10.1.2',
  certBag: '1.2.840.113549.1.12.10.1.3',
  x509Certificate: '1.2.840.113549.1.9.22.1',
  friendlyName: '1.2.840.113549.1.9.20',
  localKeyId: '1.2.840.113549.1.9.21',
} as const;

/**
 * OpenSSL 3's defaults (`openssl pkcs12 -export` without -legacy): PBES2 with
 * PBKDF2-HMAC-SHA256 and AES-256-CBC for both the key and the certificates,
 * and an HMAC-SHA256 MAC keyed by the PKCS#12 KDF (RFC 7292 appendix B). The
 * iteration counts match OpenSSL's too: the MAC is checked with the same
 * password, so it bounds a guessing attack as much as the encryption does, and
 * raising only one of them would buy nothing. pkijs runs the PKCS#12 KDF in
 * JavaScript, which makes a much larger MAC count slow.
 */
const iterations = 2048;
const pbes2: Omit<pkijs.EncryptedDataEncryptParams, 'password' | 'contentToEncrypt'> = {
  // pkijs draws the IV itself (16 random bytes, and a 64-byte salt) on every encryption
  contentEncryptionAlgorithm: { name: 'AES-CBC', length: 256 } as pkijs.ContentEncryptionAesCbcParams,
  hmacHashAlgorithm: 'SHA-256',
  iterationCount: iterations,
};

interface Pkcs12Options {
  readonly keyPem: string;
  readonly certPem: string;
  readonly chainPems: readonly string[];
  readonly password: string;
  readonly friendlyName?: string;
}

/**
 * A password-protected PKCS#12 (PFX) bundle holding the private key, its
 * certificate and the CA chain, as `openssl pkcs12` and OS key stores read it.
 *
 * The key may be any unencrypted PEM form Node reads (PKCS#8, SEC1, PKCS#1);
 * it is stored as PKCS#8. `certPem` holds exactly the leaf; each `chainPems`
 * entry holds one or more CA certificates, stored in the order given. The key
 * bag and the leaf share a localKeyId so readers pair them, and both carry
 * `friendlyName` when given. Certificates are stored byte for byte as given.
 *
 * Throws a TypeError when the key cannot be read, a PEM holds no certificate,
 * `certPem` holds more than one, or the key does not belong to the leaf.
 * Safe to call concurrently: nothing is shared between calls but the engine.
 */
export async function buildPkcs12(opts: Pkcs12Options): Promise<Buffer> {
  const key = readKey(opts.keyPem);
  const leafPems = certificatePems(opts.certPem, 'certPem');
  if (leafPems.length !== 1) throw new TypeError(`certPem: expected one certificate, found ${leafPems.length}; pass the CA certificates in chainPems`);
  const leaf = new X509Certificate(leafPems[0] as string);
  const leafSpki = leaf.publicKey.export({ type: 'spki', format: 'der' });
  if (!key.spki.equals(leafSpki)) throw new TypeError(`keyPem: the key does not belong to certificate ${leaf.subject.replace(/\n/g, ', ')}; pass the key the certificate was issued for`);
  const chain = opts.chainPems.flatMap((pem, i) => certificatePems(pem, `chainPems[${i}]`)).map((pem) => new X509Certificate(pem));
  const password = new TextEncoder().encode(opts.password).buffer;

  // What OpenSSL uses: the SHA-1 of the leaf. It only names the pair; nothing is signed with it.
  const localKeyId = createHash('sha1').update(leaf.raw).digest();
  const leafAttributes = attributes(localKeyId, opts.friendlyName);

  const sealedKey = await encrypt(new Uint8Array(key.pkcs8).buffer, password);
  const keyBag = new pkijs.PKCS8ShroudedKeyBag({ encryptionAlgorithm: sealedKey.contentEncryptionAlgorithm, encryptedData: new asn1js.OctetString({ valueHex: sealedKey.getEncryptedContent() }) });
  const keyContents = new pkijs.SafeContents({
    safeBags: [new pkijs.SafeBag({ bagId: oid.pkcs8ShroudedKeyBag, bagValue: keyBag, bagAttributes: leafAttributes })],
  });
  const certContents = new pkijs.SafeContents({
    safeBags: [certBag(leaf, leafAttributes), ...chain.map((cert) => certBag(cert, undefined))],
  });
  const sealedCerts = new pkijs.EncryptedData({ encryptedContentInfo: await encrypt(certContents.toSchema().toBER(false), password) });

  // Same layout as OpenSSL: certificates in an encrypted SafeContents, the
  // shrouded key (encrypted itself) in a plain one.
  const authenticatedSafe = new pkijs.AuthenticatedSafe({
    safeContents: [
      new pkijs.ContentInfo({ contentType: pkijs.ContentInfo.ENCRYPTED_DATA, content: sealedCerts.toSchema() }),
      new pkijs.ContentInfo({ contentType: pkijs.ContentInfo.DATA, content: new asn1js.OctetString({ valueHex: keyContents.toSchema().toBER(false) }) }),
    ],
  });

  const pfx = new pkijs.PFX({ parsedValue: { integrityMode: 0, authenticatedSafe } });
  await pfx.makeInternalValues({ password, iterations, hmacHashAlgorithm: 'SHA-256', pbkdf2HashAlgorithm: { name: 'SHA-256' } }, engine);
  return Buffer.from(pfx.toSchema().toBER(false));
}

/**
 * PBES2-encrypts `content`. pkijs's engine cuts ciphertext over 1024 bytes
 * into a constructed OCTET STRING with indefinite lengths around it: valid BER,
 * but OpenSSL writes (and strict DER readers expect) one primitive string, so
 * the ciphertext is put back into one.
 */
async function encrypt(content: ArrayBuffer, password: ArrayBuffer): Promise<pkijs.EncryptedContentInfo> {
  const data = new pkijs.EncryptedData();
  await data.encrypt({ ...pbes2, password, contentToEncrypt: content }, engine);
  const { contentType, contentEncryptionAlgorithm } = data.encryptedContentInfo;
  const encryptedContent = new asn1js.OctetString({ valueHex: data.encryptedContentInfo.getEncryptedContent() });
  return new pkijs.EncryptedContentInfo({ contentType, contentEncryptionAlgorithm, encryptedContent, disableSplit: true });
}

function readKey(pem: string): { pkcs8: Buffer; spki: Buffer } {
  let key;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new TypeError('keyPem: not an unencrypted PEM private key; pass the PEM of the leaf key', { cause: err });
  }
  // Re-exported so that SEC1, PKCS#1 and PKCS#8 v2 keys all reach the bag as PKCS#8 v1
  return { pkcs8: key.export({ type: 'pkcs8', format: 'der' }), spki: createPublicKey(key).export({ type: 'spki', format: 'der' }) };
}

function certificatePems(text: string, field: string): string[] {
  const pems = pemBlocks(text, field).filter((b) => b.label === 'CERTIFICATE').map((b) => b.pem);
  if (pems.length === 0) throw new TypeError(`${field}: no PEM certificate (-----BEGIN CERTIFICATE-----) found`);
  return pems;
}

/** localKeyId (OCTET STRING) and friendlyName (BMPString), RFC 2985 §5.5.1-5.5.2 as RFC 7292 §4.2 uses them. */
function attributes(localKeyId: Buffer, friendlyName: string | undefined): pkijs.Attribute[] {
  const list = [new pkijs.Attribute({ type: oid.localKeyId, values: [new asn1js.OctetString({ valueHex: localKeyId })] })];
  if (friendlyName !== undefined) list.push(new pkijs.Attribute({ type: oid.friendlyName, values: [new asn1js.BmpString({ value: friendlyName })] }));
  return list;
}

/** The certificate's own DER goes in, not a pkijs re-encoding of it. */
function certBag(cert: X509Certificate, bagAttributes: pkijs.Attribute[] | undefined): pkijs.SafeBag {
  const bagValue = new pkijs.CertBag({ certId: oid.x509Certificate, certValue: new asn1js.OctetString({ valueHex: cert.raw }) });
  return new pkijs.SafeBag({ bagId: oid.certBag, bagValue, ...(bagAttributes ? { bagAttributes } : {}) });
}
