import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * API keys: `pck_<id>_<secret>`. The id (12 hex digits) names the key in
 * logs, the CLI and the store; the secret is 256 random bits (base64url).
 * Only the SHA-256 of the whole key is stored: with that much entropy a
 * fast hash is enough, and the proxy never holds a key it could leak.
 */
export const apiKeyPrefix = 'pck_';
const keyPattern = /^pck_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;

export interface NewApiKey {
  readonly id: string;
  /** The key to hand out, shown once. */
  readonly key: string;
  /** Hex SHA-256 of `key`: what the store keeps. */
  readonly hash: string;
}

export const hashApiKey = (key: string): string => createHash('sha256').update(key).digest('hex');

export function newApiKey(): NewApiKey {
  const id = randomBytes(6).toString('hex');
  const key = `${apiKeyPrefix}${id}_${randomBytes(32).toString('base64url')}`;
  return { id, key, hash: hashApiKey(key) };
}

/** The id a presented key claims, or null when it is not shaped like one of ours. */
export function apiKeyIdOf(presented: string): string | null {
  return keyPattern.exec(presented)?.[1] ?? null;
}

/** Whether `presented` is the key whose hash is `hash`, compared in constant time. */
export function apiKeyMatches(presented: string, hash: string): boolean {
  const expected = Buffer.from(hash, 'hex');
  const actual = createHash('sha256').update(presented).digest();
  return expected.length === actual.length && timingSafeEqual(actual, expected);
}
