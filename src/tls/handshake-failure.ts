import type { Reason } from '../errors.js';

export interface HandshakeFailure {
  readonly reason: Reason;
  /** OpenSSL's or Node's code, e.g. ERR_SSL_UNSUPPORTED_PROTOCOL. */
  readonly detail: string;
}

/** Classifies a `tlsClientError` into a reason code. */
export function classifyHandshakeFailure(err: Error & { code?: string }): HandshakeFailure {
  const code = err.code ?? 'UNKNOWN';
  if (code === 'PCL_TLS_UNKNOWN_SNI') return { reason: 'unknown_sni', detail: code };
  if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return { reason: 'handshake_timeout', detail: code };
  return { reason: 'handshake_failed', detail: code };
}
