import type { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { decodeCertificate, PemError, pemBlocks } from '../pki/index.js';
import { unreadableReason, type ProvisionContext } from './provision-context.js';

export interface BundleCertificate {
  readonly pem: string;
  readonly cert: X509Certificate;
}

/** A CA bundle file as read by `readCertificateBundle`. */
export interface CertificateBundle {
  /** The file, resolved. */
  readonly file: string;
  /** The whole file ("" when it could not be read). */
  readonly text: string;
  /** The certificates that decoded, in file order. */
  readonly certificates: readonly BundleCertificate[];
  /** False when an issue was reported: the file cannot be read, a certificate in it does not decode, or it holds none. */
  readonly complete: boolean;
}

/**
 * What a CA file should hold, in the words of the fix an issue proposes:
 * `unreadable` ends "cannot read FILE (ENOENT); give …", `empty` ends
 * "FILE holds no PEM certificate; give …".
 */
export interface BundleHint {
  readonly unreadable: string;
  readonly empty: string;
}

/**
 * Reads a CA bundle file of the config (`acme.ca`, `clientAuth.ca[]`,
 * `upstreamTls.ca`): every problem is an issue at `at`, and the certificates
 * that did decode are returned anyway, so that the caller's own checks of
 * them still report what they find.
 */
export function readCertificateBundle(ctx: ProvisionContext, at: string, path: string, hint: BundleHint): CertificateBundle {
  const file = ctx.file(path);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    ctx.issue(at, `cannot read ${file} (${unreadableReason(err)}); give ${hint.unreadable}`);
    return { file, text: '', certificates: [], complete: false };
  }
  const read = certificatesIn(text, file);
  for (const problem of read.problems) ctx.issue(at, problem);
  if (read.certificates.length === 0 && read.problems.length === 0) ctx.issue(at, `${file} holds no PEM certificate; give ${hint.empty}`);
  return { file, text, certificates: read.certificates, complete: read.problems.length === 0 && read.certificates.length > 0 };
}

/**
 * The certificates of a CA file, each parsed and its public key decoded; a
 * file cut off inside a block, or a certificate that does not decode, is a
 * problem naming the file (never a silently shorter bundle).
 */
function certificatesIn(text: string, file: string): { certificates: BundleCertificate[]; problems: string[] } {
  let blocks;
  try {
    blocks = pemBlocks(text, file).filter((b) => b.label === 'CERTIFICATE');
  } catch (err) {
    if (err instanceof PemError) return { certificates: [], problems: [err.message] };
    throw err;
  }
  const certificates: BundleCertificate[] = [];
  const problems: string[] = [];
  for (const [i, b] of blocks.entries()) {
    const decoded = decodeCertificate(b.pem);
    if (decoded.ok) certificates.push({ pem: b.pem, cert: decoded.cert });
    else problems.push(`certificate #${i + 1} in ${file} ${decoded.problem}; write the file again from its source`);
  }
  return { certificates, problems };
}
