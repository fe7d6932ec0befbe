import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classifyUpstreamError } from '../../src/proxy/upstream-errors.js';

const err = (code: string, cause?: { code: string }) => Object.assign(new Error(code), { code, cause });

test('maps upstream failures to reason codes and says when nothing reached the upstream', () => {
  const cases: [Error & { code?: string }, string, string, boolean][] = [
    [err('ECONNREFUSED'), 'upstream_unreachable', 'ECONNREFUSED', true],
    [err('UND_ERR_CONNECT_TIMEOUT'), 'upstream_timeout', 'UND_ERR_CONNECT_TIMEOUT', true],
    [err('UND_ERR_HEADERS_TIMEOUT'), 'upstream_timeout', 'UND_ERR_HEADERS_TIMEOUT', false],
    [err('UNABLE_TO_VERIFY_LEAF_SIGNATURE'), 'upstream_cert_untrusted', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', true],
    [err('DEPTH_ZERO_SELF_SIGNED_CERT'), 'upstream_cert_untrusted', 'DEPTH_ZERO_SELF_SIGNED_CERT', true],
    [err('CERT_HAS_EXPIRED'), 'upstream_cert_expired', 'CERT_HAS_EXPIRED', true],
    [err('ERR_TLS_CERT_ALTNAME_INVALID'), 'upstream_cert_name_mismatch', 'ERR_TLS_CERT_ALTNAME_INVALID', true],
    [err('ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION'), 'upstream_tls_failed', 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION', true],
    [err('UND_ERR_SOCKET', { code: 'ECONNRESET' }), 'upstream_unreachable', 'ECONNRESET', false],
    [err('HPE_INVALID_CONSTANT'), 'upstream_bad_response', 'HPE_INVALID_CONSTANT', false],
    [err('PCL_UPSTREAM_BAD_HEADERS'), 'upstream_bad_response', 'PCL_UPSTREAM_BAD_HEADERS', false],
  ];
  for (const [e, reason, detail, beforeRequest] of cases) assert.deepEqual(classifyUpstreamError(e), { reason, detail, beforeRequest }, e.code);
});
