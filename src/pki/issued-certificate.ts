import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { writeFileAtomic } from '../state/index.js';
import { certificateCovers } from './certificate-pair.js';
import { issueServerCertificate, type LocalCa } from './local-ca.js';

/** Lifetime of `internal: true` certificates; renewed once two thirds have passed. */
export const internalLifetimeDays = 90;

export interface IssuedFiles {
  readonly certFile: string;
  readonly keyFile: string;
  readonly hosts: readonly string[];
  readonly lifetimeDays: number;
}

/** Whether the certificate in `certFile` was issued by the CA's issuing certificate, covers `hosts` and has more than a third of its lifetime left. */
function stillGood(files: IssuedFiles, ca: LocalCa, now: number): boolean {
  if (!existsSync(files.certFile) || !existsSync(files.keyFile)) return false;
  try {
    const leaf = new X509Certificate(readFileSync(files.certFile));
    const caCert = new X509Certificate(Buffer.from(ca.issuing.cert.rawData));
    const from = new Date(leaf.validFrom).getTime();
    const to = new Date(leaf.validTo).getTime();
    return leaf.checkIssued(caCert) && leaf.verify(caCert.publicKey) && to - now > (to - from) / 3 && files.hosts.every((h) => certificateCovers(leaf, h));
  } catch {
    return false;
  }
}

/**
 * Keeps a server certificate issued by the built-in CA in `certFile`/`keyFile`:
 * issues one when there is none, when it does not cover `hosts`, or once two
 * thirds of its lifetime have passed. The key is written first (0600) and
 * each file atomically; a file watcher then sees a complete pair. Returns
 * whether it issued.
 */
export async function ensureIssuedCertificate(ca: LocalCa, files: IssuedFiles, now = Date.now()): Promise<boolean> {
  if (stillGood(files, ca, now)) return false;
  const pair = await issueServerCertificate(ca, files.hosts, files.lifetimeDays);
  writeFileAtomic(files.keyFile, pair.keyPem, 0o600);
  writeFileAtomic(files.certFile, pair.certPem + ca.chainPem);
  return true;
}
