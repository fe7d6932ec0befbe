/**
 * The error catalog: every error Portcullis raises and every reason code a user
 * can see. Codes are stable forever and never reused; code matches on `code`,
 * never on message text. `docs/errors.md` documents each entry (a test checks).
 */

/** Operator-facing failures: config, files, listeners, the built-in CA. */
export const errorCatalog = {
  PCL_CONFIG_NOT_FOUND: 'the config file does not exist or cannot be read',
  PCL_CONFIG_YAML: 'the config file is not valid YAML',
  PCL_CONFIG_INVALID: 'the config does not pass validation; each issue names the key, the value and the fix',
  PCL_LISTEN_FAILED: 'a listener could not bind its address',
  PCL_PKI_STORE_INVALID: 'files of the built-in CA under dataDir exist but cannot be used',
  PCL_CLI_USAGE: 'a command was called with arguments it cannot use',
  PCL_RELOAD_FAILED: 'a reload could not be applied; the previous config keeps serving',
  PCL_CONTROL_IN_USE: 'another running instance already uses this dataDir',
  PCL_CONTROL_UNREACHABLE: 'no running instance answers on the control socket of this dataDir',
  PCL_WORKER_FAILED: 'a worker process could not start',
  PCL_ADMIN_TOKEN_INVALID: 'the admin token file under dataDir exists but cannot be read or holds no token',
  PCL_API_KEYS_INVALID: 'the API key store under dataDir exists but cannot be read; the instance refuses to start without it rather than refuse every key without saying why',
  PCL_DENY_LIST_INVALID: 'the deny list under dataDir exists but cannot be read; the instance refuses to start without it rather than readmit blocked certificates',
  PCL_STATE_WRITE_FAILED: 'a file under dataDir (or another state file) could not be written: full disk, read-only filesystem, permissions; nothing was changed',
  PCL_STATE_UNREACHABLE: 'the redis state backend (state.redis) did not answer at start; the instance refuses to start rather than serve without the cluster\'s deny list and blocks',
  PCL_STATE_NOT_PERSISTED: 'a security-tightening change (deny add, keys revoke) could not be saved; the running instance applied it and keeps retrying to save it',
  PCL_STATE_UNAVAILABLE: 'with state.backend: redis, a change that loosens the cluster\'s shared state (deny remove) needs Redis, which cannot be reached now; nothing was changed',
  PCL_STATE_SHARED_WRITE_FAILED: 'a change to state the cluster shares (the built-in CA) could not be recorded in Redis: Redis is unreachable, or another holder took the cluster lock meanwhile; nothing was changed',
  // Failures met while serving, never thrown to a command: the code is the `detail` of a reason code (or, for the last two, the abort reason handed to undici).
  PCL_TLS_UNREADABLE_CONNECTION: 'a finished TLS handshake could not be described (protocol, cipher, client certificate); the connection is closed as handshake_failed rather than served undescribed',
  PCL_UPSTREAM_BAD_HEADERS: 'the upstream answered with response headers that cannot be relayed to the client (a field HTTP/2 forbids or allows once, an invalid character); answered 502 upstream_bad_response',
  PCL_CLIENT_GONE: 'the client closed its connection or stream before the upstream answer was relayed; the upstream request is aborted',
  PCL_CLIENT_STALLED: 'the client read nothing of the response within timeouts.send; the upstream request is aborted and the client cut off (send_timeout)',
} as const;

export type ErrorCode = keyof typeof errorCatalog;

export class PortcullisError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PortcullisError';
    this.code = code;
  }
}

/** One problem in a config: `path` is the key (`sites[1].routes[0].upstream`), `message` says what and how to fix. */
export interface ConfigIssue {
  readonly path: string;
  readonly message: string;
}

export class ConfigError extends PortcullisError {
  readonly issues: readonly ConfigIssue[];
  constructor(source: string, issues: readonly ConfigIssue[]) {
    const lines = issues.map((i) => (i.path ? `  ${i.path}: ${i.message}` : `  ${i.message}`));
    super('PCL_CONFIG_INVALID', `${source}: ${issues.length} problem${issues.length === 1 ? '' : 's'}\n${lines.join('\n')}`);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

/**
 * Reason codes: the vocabulary shared by logs, metrics, HTTP error bodies and
 * the dashboard. `status` is the HTTP status when the reason ends a request;
 * 0 for reasons that end a connection before any HTTP exchange.
 */
export const reasonCatalog = {
  // request routing
  unknown_host: { status: 421, text: 'the Host header names no host of the site this connection was made to' },
  sni_host_mismatch: { status: 421, text: 'the Host header belongs to another site than the TLS server name (SNI)' },
  no_route: { status: 404, text: 'no route of the site matches the request path' },
  bad_request_target: { status: 400, text: 'the request target is not a valid origin-form or absolute-form URL' },
  ambiguous_path: { status: 400, text: 'the path contains an encoded slash or backslash that upstreams could decode differently' },
  malformed_request: { status: 400, text: 'the HTTP request could not be parsed' },
  request_timeout: { status: 408, text: 'the request headers or body did not arrive within timeouts.headers / timeouts.request' },
  send_timeout: { status: 0, text: 'the client read nothing of the response within timeouts.send and was disconnected' },
  headers_too_large: { status: 431, text: 'the request header list is larger than limits.maxHeaderBytes, or has more fields than limits.maxHeaderFields' },
  method_not_allowed: { status: 405, text: 'the method cannot be proxied (CONNECT, TRACE)' },
  unsupported_upgrade: { status: 400, text: 'a request asking for a protocol upgrade other than WebSocket carried a body' },
  // client certificates (mutual TLS)
  policy_changed: { status: 421, text: 'a reload changed the site client-certificate policy after this connection was made; connect again' },
  no_certificate: { status: 401, text: 'the route or site requires a client certificate and none was presented' },
  unknown_ca: { status: 403, text: 'the client certificate does not chain to a CA of clientAuth.ca (foreign CA, self-signed, missing intermediate)' },
  expired: { status: 403, text: 'the client certificate (or a CA above it) has expired' },
  not_yet_valid: { status: 403, text: 'the client certificate (or a CA above it) is not valid yet' },
  bad_signature: { status: 403, text: 'a signature in the client certificate chain does not verify' },
  wrong_key_usage: { status: 403, text: 'the client certificate lacks the clientAuth extended key usage' },
  chain_too_long: { status: 403, text: 'the client certificate chain has more CA certificates than clientAuth.verifyDepth' },
  identity_not_allowed: { status: 403, text: 'the client certificate is valid but matches no entry of the route allow-list' },
  revoked: { status: 403, text: 'the client certificate (or a CA above it) is revoked by a CRL, its OCSP responder or the deny list' },
  revocation_unavailable: { status: 403, text: 'no fresh CRL or OCSP answer could be had for the client certificate and clientAuth.onRevocationUnavailable is reject' },
  bad_certificate: { status: 403, text: 'the client certificate failed verification for another reason; the log has the OpenSSL code' },
  // API keys and rate limits
  missing_api_key: { status: 401, text: 'the route requires an API key (apiKeys: required) and none was presented in the key header (Authorization: Bearer by default)' },
  unknown_api_key: { status: 401, text: 'the presented API key is not one this instance issued (mistyped, from another instance, or deleted)' },
  expired_api_key: { status: 401, text: 'the API key is past its expiry (or the overlap window of a rotation ended); use its replacement or create a new one' },
  revoked_api_key: { status: 401, text: 'the API key was revoked with portcullis keys revoke' },
  key_not_allowed_for_route: { status: 401, text: 'the API key is valid but restricted to other routes (portcullis keys create --routes)' },
  key_certificate_mismatch: { status: 401, text: 'the API key is bound to a client certificate, and this connection did not present that certificate' },
  rate_limited: { status: 429, text: 'the client (its certificate, else its API key, else its address) exceeded the route rateLimit; Retry-After says when to try again' },
  // upstream
  upstream_unreachable: { status: 502, text: 'the upstream refused or dropped the connection' },
  upstream_timeout: { status: 504, text: 'the upstream did not connect or answer within the configured timeout' },
  upstream_cert_untrusted: { status: 502, text: 'the upstream certificate does not chain to a trusted CA (system roots plus upstreamTls.ca)' },
  upstream_cert_expired: { status: 502, text: 'the upstream certificate has expired' },
  upstream_cert_not_yet_valid: { status: 502, text: 'the upstream certificate is not valid yet' },
  upstream_cert_name_mismatch: { status: 502, text: 'the upstream certificate does not cover the expected name (upstreamTls.serverName or the URL host)' },
  upstream_tls_failed: { status: 502, text: 'the TLS handshake with the upstream failed' },
  upstream_bad_response: { status: 502, text: 'the upstream answered with a malformed HTTP response' },
  // admin listener and partner enrollment
  admin_unauthorized: { status: 401, text: 'an admin API request without the admin token (Authorization: Bearer, from dataDir/admin/token) or with a wrong one' },
  unknown_enrollment_token: { status: 401, text: 'an enrollment request without a token, or with one this CA never made' },
  used_enrollment_token: { status: 403, text: 'the enrollment token was used already; tokens are single-use: make a new one with portcullis ca enroll-token' },
  expired_enrollment_token: { status: 403, text: 'the enrollment token is past its expiry; make a new one with portcullis ca enroll-token' },
  bad_csr: { status: 400, text: 'the enrollment body is not a PKCS#10 certificate request (PEM or DER) whose signature verifies' },
  weak_csr_key: { status: 400, text: 'the certificate request key is not ECDSA P-256/P-384, Ed25519 or RSA of at least 2048 bits' },
  body_too_large: { status: 413, text: 'the request body is larger than the admin endpoint accepts' },
  state_unavailable: { status: 503, text: 'with state.backend: redis, the change (an enrollment) could not be recorded in the cluster\'s Redis; nothing was issued and the token is unspent: try again' },
  // proxy
  internal_error: { status: 500, text: 'an unexpected error inside the proxy; the log has the details' },
  // connections refused before or during the TLS handshake (never an HTTP answer, except plaintext_http)
  plaintext_http: { status: 0, text: 'plain HTTP was sent to the HTTPS port; it is answered 400 and closed' },
  malformed_client_hello: { status: 0, text: 'the first bytes were not a well-formed TLS ClientHello' },
  unknown_sni: { status: 0, text: 'the TLS server name matches no site and no site is marked default' },
  missing_sni: { status: 0, text: 'the client sent no TLS server name and no site is marked default' },
  unsupported_protocol: { status: 0, text: 'the client offered only TLS versions below the profile minimum' },
  no_shared_cipher: { status: 0, text: 'the client offered no cipher suite, group or signature algorithm of the profile' },
  client_closed: { status: 0, text: 'the client closed the connection in the middle of the TLS handshake' },
  handshake_failed: { status: 0, text: 'the TLS handshake failed for another reason (alert, reset); the log has the OpenSSL code' },
  no_acme_challenge: { status: 0, text: 'a ClientHello offered only acme-tls/1 (an ACME tls-alpn-01 validation) for a name with no challenge pending' },
  certificate_pending: { status: 0, text: 'the site gets its certificate from ACME and none has been issued yet; its handshakes are refused until one is' },
  blocked: { status: 0, text: 'the source address is blocked by the detector after repeated failed handshakes or client certificates; closed at accept' },
  ip_denied: { status: 0, text: 'the source address is outside the ipAccess lists: the global ones close it at accept, a site\'s refuse its ClientHello before TLS' },
  handshake_timeout: { status: 0, text: 'the TLS handshake did not finish within timeouts.handshake' },
  // PROXY protocol (listen.proxyProtocol): refused before TLS or HTTP, nothing answered
  proxy_protocol_missing: { status: 0, text: 'a connection from a load balancer of listen.proxyProtocol did not start with a PROXY header (none within timeouts.handshake, or other bytes first)' },
  proxy_protocol_malformed: { status: 0, text: 'a load balancer of listen.proxyProtocol sent a PROXY header that is malformed, too long (v1 over 107 bytes, v2 over 528) or cut short; the log says what is wrong' },
  proxy_protocol_untrusted: { status: 0, text: 'a source outside listen.proxyProtocol sent a PROXY header; it is not believed, and the connection is closed' },
  // established connections the proxy ends (never an HTTP answer: HTTP/2 GOAWAY with ENHANCE_YOUR_CALM, then the TCP connection is closed)
  rapid_reset: { status: 0, text: 'an HTTP/2 client reset more streams before their answer began than the per-connection budget allows (rapid reset, CVE-2023-44487)' },
  control_frame_flood: { status: 0, text: 'an HTTP/2 client sent more PING and SETTINGS frames than the per-connection budget allows' },
  http2_protocol_error: { status: 0, text: 'Node ended an HTTP/2 connection because the client broke the protocol (a CONTINUATION flood, a flow-control window pushed past its maximum, too many invalid frames …)' },
} as const;

export type Reason = keyof typeof reasonCatalog;
