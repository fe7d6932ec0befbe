import { x509 } from '../pki/index.js';
import { getJson } from './acme-http.js';

/**
 * When to renew: once a third of the lifetime is left (Let's Encrypt's and
 * Caddy's rule), moved earlier by up to a thirtieth of the lifetime at
 * random, so that certificates issued together do not all renew in the same
 * minute. `random` is in [0, 1).
 */
export function renewalTime(notBefore: number, notAfter: number, random: number): number {
  const lifetime = notAfter - notBefore;
  return notAfter - lifetime / 3 - (random * lifetime) / 30;
}

/** Delays between failed attempts: quick at first (a CA restart), then backing off to a ceiling of 6 hours; ±10 % jitter. */
const retrySteps = [10_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_800_000, 3_600_000, 7_200_000, 14_400_000, 21_600_000];
export function retryDelay(attempt: number, random: number): number {
  const base = retrySteps[Math.min(Math.max(attempt, 1), retrySteps.length) - 1] as number;
  return Math.round(base * (0.9 + random * 0.2));
}

/**
 * The ARI identifier of a certificate (RFC 9773 §4.1): the base64url key
 * identifier of its Authority Key Identifier, ".", the base64url DER content
 * of its serial number. Null without an Authority Key Identifier.
 */
export function ariCertId(certPem: string): string | null {
  const cert = new x509.X509Certificate(certPem);
  const keyId = cert.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId;
  if (!keyId) return null;
  let serial = Buffer.from(cert.serialNumber.length % 2 ? `0${cert.serialNumber}` : cert.serialNumber, 'hex');
  // a DER INTEGER is signed: a serial whose first bit is set carries a leading zero octet
  if (((serial[0] as number) & 0x80) !== 0) serial = Buffer.concat([Buffer.from([0]), serial]);
  return `${Buffer.from(keyId, 'hex').toString('base64url')}.${serial.toString('base64url')}`;
}

export interface RenewalWindow {
  readonly start: number;
  readonly end: number;
}

/**
 * The renewal window the CA suggests (ARI), when its directory offers
 * `renewalInfo`; null when it does not or the answer is unusable — then the
 * lifetime rule applies. Run it inside `withCa` with the source's CA.
 */
export async function suggestedWindow(directory: string, certPem: string): Promise<RenewalWindow | null> {
  try {
    const id = ariCertId(certPem);
    if (!id) return null;
    const dir = await getJson(directory);
    if (typeof dir.renewalInfo !== 'string') return null;
    const info = (await getJson(`${dir.renewalInfo.replace(/\/$/, '')}/${id}`)) as { suggestedWindow?: { start?: unknown; end?: unknown } };
    const start = Date.parse(String(info.suggestedWindow?.start));
    const end = Date.parse(String(info.suggestedWindow?.end));
    return Number.isFinite(start) && Number.isFinite(end) && end > start ? { start, end } : null;
  } catch {
    return null;
  }
}

/** A moment in the window at random (RFC 9773 §4.2), or now once the window has begun to pass. */
export function timeInWindow(window: RenewalWindow, random: number, now: number): number {
  return Math.max(now, window.start + random * (window.end - window.start));
}
