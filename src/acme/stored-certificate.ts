import { X509Certificate, createPrivateKey } from 'node:crypto';
import { certificateCovers } from '../pki/index.js';
import type { StateBackend } from '../state/index.js';
import { renewalTime } from './renewal.js';

/** A certificate and key as the state holds them, checked. */
export interface StoredCertificate {
  readonly certPem: string;
  readonly keyPem: string;
  readonly leaf: X509Certificate;
}

/** The stored pair when it is one: the key matches the leaf (a reader between the two writes of a new pair sees the old leaf with the new key). */
export function storedPair(certPem: string, keyPem: string): StoredCertificate | null {
  try {
    const leaf = new X509Certificate(certPem);
    return leaf.checkPrivateKey(createPrivateKey(keyPem)) ? { certPem, keyPem, leaf } : null;
  } catch {
    return null;
  }
}

/**
 * The certificate another instance of the cluster stored for `names` while
 * this one waited for the per-certificate lock, when it is still fresh:
 * a matching pair covering every name, valid now, and not yet in its
 * renewal window (the earliest moment `renewalTime` can choose). Null when
 * there is none, or when it is one of `known` (fingerprints this instance
 * already served or tried): a certificate due for renewal, or one the
 * config refused, is ordered anew.
 */
export async function freshStoredCertificate(state: StateBackend, keys: { cert: string; key: string }, names: readonly string[], known: readonly (string | null)[], now = Date.now()): Promise<StoredCertificate | null> {
  const [cert, key] = await Promise.all([state.read(keys.cert), state.read(keys.key)]);
  if (!cert || !key) return null;
  const pair = storedPair(cert.toString('utf8'), key.toString('utf8'));
  if (!pair || known.includes(pair.leaf.fingerprint256)) return null;
  const from = Date.parse(pair.leaf.validFrom);
  const to = Date.parse(pair.leaf.validTo);
  if (now < from || now >= renewalTime(from, to, 1)) return null;
  return names.every((n) => certificateCovers(pair.leaf, n)) ? pair : null;
}
