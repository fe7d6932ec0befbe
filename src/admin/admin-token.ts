import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { PortcullisError } from '../errors.js';
import { adminTokenFile, writeFileAtomic } from '../state/index.js';

/** The admin API's bearer token: the file holds it (mode 0600); the process keeps only its hash. */
export interface AdminToken {
  readonly file: string;
  readonly sha256: Buffer;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest();
const tokenPattern = /^pca_[A-Za-z0-9_-]{43}$/;

/**
 * Reads `dataDir/admin/token`, creating it with a fresh 256-bit token on the
 * first start of an admin listener. Operators and scrapers read the file
 * (Prometheus: `authorization.credentials_file`); it is never logged.
 */
export function ensureAdminToken(dataDir: string): AdminToken {
  const file = adminTokenFile(dataDir);
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new PortcullisError('PCL_ADMIN_TOKEN_INVALID', `cannot read the admin token ${file} (${(err as NodeJS.ErrnoException).code}); check its permissions`, { cause: err });
    }
    text = `pca_${randomBytes(32).toString('base64url')}`;
    writeFileAtomic(file, `${text}\n`, 0o600);
  }
  if (!tokenPattern.test(text)) throw new PortcullisError('PCL_ADMIN_TOKEN_INVALID', `${file} does not hold an admin token (pca_…); delete it and a new one is made at the next start`);
  return { file, sha256: sha256(text) };
}

/** Whether an `Authorization` header carries the admin token; compared as hashes in constant time. */
export function carriesAdminToken(authorization: string | undefined, token: AdminToken): boolean {
  const presented = /^Bearer (\S+)$/i.exec(authorization ?? '')?.[1];
  return presented !== undefined && timingSafeEqual(sha256(presented), token.sha256);
}
