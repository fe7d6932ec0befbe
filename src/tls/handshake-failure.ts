import type { Reason } from '../errors.js';

export interface HandshakeFailure {
  readonly reason: Reason;
  /** OpenSSL's or Node's code, e.g. ERR_SSL_UNSUPPORTED_PROTOCOL. */
  readonly detail: string;
}

const byCode: Record<string, Reason> = {
  ERR_TLS_HANDSHAKE_TIMEOUT: 'handshake_timeout',
  ERR_SSL_UNSUPPORTED_PROTOCOL: 'unsupported_protocol',
  ERR_SSL_NO_SHARED_CIPHER: 'no_shared_cipher',
  ERR_SSL_NO_SHARED_SIGNATURE_ALGORITHMS: 'no_shared_cipher',
  ERR_SSL_NO_SUITABLE_KEY_SHARE: 'no_shared_cipher',
  ERR_SSL_NO_SUITABLE_SIGNATURE_ALGORITHM: 'no_shared_cipher',
  ECONNRESET: 'client_closed',
  EPIPE: 'client_closed',
};

/** Classifies a `tlsClientError` into a reason code. */
export function classifyHandshakeFailure(err: Error & { code?: string }): HandshakeFailure {
  const code = err.code ?? 'UNKNOWN';
  const reason = byCode[code] ?? 'handshake_failed';
  return { reason, detail: code };
}
