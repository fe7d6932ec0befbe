import type { IncomingHttpHeaders } from 'node:http';
import type { Reason } from '../errors.js';
import type { ClientCertificate } from '../trust/index.js';
import { apiKeyIdOf, apiKeyMatches } from './api-key-format.js';
import type { ApiKeyRecord } from './api-key-store.js';

export type KeyVerdict = { readonly ok: true; readonly id: string } | { readonly ok: false; readonly reason: Reason; readonly id: string | null };

/**
 * The key presented in `header`: with `authorization`, the credentials of the
 * Bearer scheme (RFC 6750); with any other header, its whole value. Null when
 * absent or empty.
 */
export function presentedApiKey(headers: IncomingHttpHeaders, header: string): string | null {
  const raw = headers[header];
  const value = (Array.isArray(raw) ? raw[0] : raw)?.trim();
  if (!value) return null;
  if (header !== 'authorization') return value;
  const m = /^bearer +(\S+)$/i.exec(value);
  return m ? (m[1] as string) : null;
}

/**
 * The API keys in force, by id: a presented key is looked up by the id it
 * carries and its hash compared in constant time, then its state, routes and
 * certificate binding are checked. Replaced as a whole when the store changes.
 */
export class ApiKeyRing {
  #byId: ReadonlyMap<string, ApiKeyRecord> = new Map();

  set(records: readonly ApiKeyRecord[]): void {
    this.#byId = new Map(records.map((r) => [r.id, r]));
  }

  get size(): number {
    return this.#byId.size;
  }

  verify(presented: string, routePath: string, client: ClientCertificate | null, now = Date.now()): KeyVerdict {
    const id = apiKeyIdOf(presented);
    const record = id === null ? undefined : this.#byId.get(id);
    if (!record || !apiKeyMatches(presented, record.hash)) return { ok: false, reason: 'unknown_api_key', id: null };
    if (record.revokedAt !== null) return { ok: false, reason: 'revoked_api_key', id: record.id };
    if (record.expiresAt !== null && Date.parse(record.expiresAt) <= now) return { ok: false, reason: 'expired_api_key', id: record.id };
    if (record.routes !== null && !record.routes.includes(routePath)) return { ok: false, reason: 'key_not_allowed_for_route', id: record.id };
    if (record.bindCert !== null || record.bindUri !== null) {
      const identity = client?.status === 'valid' ? client.identity : null;
      const bound = identity !== null && (record.bindCert === null || identity.fingerprint === record.bindCert) && (record.bindUri === null || identity.uris.includes(record.bindUri));
      if (!bound) return { ok: false, reason: 'key_certificate_mismatch', id: record.id };
    }
    return { ok: true, id: record.id };
  }
}
