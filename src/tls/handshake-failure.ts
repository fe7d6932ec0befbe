import type { TLSSocket } from 'node:tls';
import type { Reason } from '../errors.js';
import { clientCertReasonOf } from '../trust/index.js';

export interface HandshakeFailure {
  readonly reason: Reason;
  /** OpenSSL's or Node's code, e.g. ERR_SSL_UNSUPPORTED_PROTOCOL. */
  readonly detail: string;
  /** The client certificate was refused (refuseAt: handshake): counted with the other client-certificate refusals. */
  readonly clientCertificate: boolean;
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

/**
 * Classifies a `tlsClientError` into a reason code. On a site that refuses in
 * the handshake, OpenSSL fails a handshake without a certificate itself, and
 * Node closes one whose certificate failed verification (when the client sent
 * no server name, see tls-server.ts) with a bare ECONNRESET: the socket's
 * authorizationError then says why.
 */
export function classifyHandshakeFailure(err: Error & { code?: string }, socket: TLSSocket): HandshakeFailure {
  const code = err.code ?? 'UNKNOWN';
  if (code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE') return { reason: 'no_certificate', detail: code, clientCertificate: true };
  const verifyError = socket.authorizationError as unknown as string | Error | null | undefined;
  if (code === 'ECONNRESET' && verifyError) {
    const verifyCode = typeof verifyError === 'string' ? verifyError : ((verifyError as Error & { code?: string }).code ?? verifyError.message);
    return { reason: clientCertReasonOf(verifyCode), detail: verifyCode, clientCertificate: true };
  }
  return { reason: byCode[code] ?? 'handshake_failed', detail: code, clientCertificate: false };
}
