import type { Reason } from '../errors.js';

export interface UpstreamFailure {
  readonly reason: Reason;
  /** The underlying code (OpenSSL verification error, errno, undici code). */
  readonly detail: string;
  /** Nothing reached the upstream: safe to try another one. */
  readonly beforeRequest: boolean;
}

const untrusted = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'CERT_REJECTED',
  'INVALID_CA',
  'CERT_CHAIN_TOO_LONG',
]);

const byCode: Record<string, { reason: Reason; beforeRequest: boolean }> = {
  CERT_HAS_EXPIRED: { reason: 'upstream_cert_expired', beforeRequest: true },
  CERT_NOT_YET_VALID: { reason: 'upstream_cert_not_yet_valid', beforeRequest: true },
  ERR_TLS_CERT_ALTNAME_INVALID: { reason: 'upstream_cert_name_mismatch', beforeRequest: true },
  ECONNREFUSED: { reason: 'upstream_unreachable', beforeRequest: true },
  EHOSTUNREACH: { reason: 'upstream_unreachable', beforeRequest: true },
  ENETUNREACH: { reason: 'upstream_unreachable', beforeRequest: true },
  ENOTFOUND: { reason: 'upstream_unreachable', beforeRequest: true },
  EAI_AGAIN: { reason: 'upstream_unreachable', beforeRequest: true },
  UND_ERR_CONNECT_TIMEOUT: { reason: 'upstream_timeout', beforeRequest: true },
  UND_ERR_HEADERS_TIMEOUT: { reason: 'upstream_timeout', beforeRequest: false },
  UND_ERR_BODY_TIMEOUT: { reason: 'upstream_timeout', beforeRequest: false },
  UND_ERR_INFO: { reason: 'upstream_bad_response', beforeRequest: false },
  UND_ERR_RES_CONTENT_LENGTH_MISMATCH: { reason: 'upstream_bad_response', beforeRequest: false },
  PCL_UPSTREAM_BAD_HEADERS: { reason: 'upstream_bad_response', beforeRequest: false },
};

/** Maps an undici/TLS/socket error to its reason code. */
export function classifyUpstreamError(err: Error & { code?: string; cause?: unknown }): UpstreamFailure {
  // undici's llhttp errors carry no code, only their name and the parser's words:
  // "Response does not match the HTTP/1.1 protocol (Invalid status code)"
  if (err.name === 'HTTPParserError') return { reason: 'upstream_bad_response', detail: `HTTPParserError: ${/\(([^)]*)\)\s*$/.exec(err.message)?.[1] ?? err.message}`, beforeRequest: false };
  // undici wraps socket errors; the TLS verification code sits on the cause
  const inner = (err.cause as { code?: string } | undefined)?.code;
  const code = (err.code && err.code !== 'UND_ERR_SOCKET' ? err.code : inner ?? err.code) ?? 'UNKNOWN';
  if (untrusted.has(code)) return { reason: 'upstream_cert_untrusted', detail: code, beforeRequest: true };
  const known = byCode[code];
  if (known) return { ...known, detail: code };
  if (code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_')) return { reason: 'upstream_tls_failed', detail: code, beforeRequest: true };
  if (code.startsWith('HPE_')) return { reason: 'upstream_bad_response', detail: code, beforeRequest: false };
  return { reason: 'upstream_unreachable', detail: code, beforeRequest: false };
}
