import { isIP } from 'node:net';
import { z } from 'zod';
import { durationMs, durationPattern } from './durations.js';
import { normaliseSiteHost, parseListenAddress } from './addresses.js';
import { defaultDataDir } from '../state/index.js';
import { hasAmbiguousEncoding, normaliseFingerprint, parseSubjectPattern } from '../trust/index.js';
import { normalisePath } from './url-path.js';

/**
 * The raw config schema: the public file format of `shared/config-contract.yaml`
 * plus the keys added beside it. Unknown keys are errors everywhere. Defaults
 * live here and nowhere else. Values stay as written (strings for durations and
 * paths); `provision.ts` turns them into the typed runtime config.
 */

const duration = (min: string, max: string) =>
  z
    .string({ error: 'use a duration string such as "90s", "15m", "12h" or "30d"' })
    .regex(durationPattern, { error: 'use a duration string such as "500ms", "90s", "15m", "12h" or "30d"', abort: true })
    .refine((v) => durationMs(v) >= durationMs(min) && durationMs(v) <= durationMs(max), {
      error: `use a duration between ${min} and ${max}`,
    });

const listenAddress = z
  .string({ error: 'use host:port, e.g. "127.0.0.1:8443" or "[::1]:8443"' })
  .refine((v) => parseListenAddress(v) !== null, { error: 'use host:port, e.g. "127.0.0.1:8443", "0.0.0.0:443" or "[::1]:8443"' });

const path = z.string({ error: 'use a file path (relative to the config file)' }).min(1, { error: 'use a non-empty file path' });

const siteHost = z
  .string({ error: 'use a DNS name, a "*." wildcard or an IP address' })
  .refine((v) => normaliseSiteHost(v) !== null, {
    error: 'use a DNS name ("api.example.test"), a wildcard over one whole label ("*.api.example.test") or an IP address',
  });

const cidr = z.string({ error: 'use an IP address or CIDR, e.g. "10.0.0.0/8"' }).refine(
  (v) => {
    const [addr, bits, extra] = v.split('/');
    const family = isIP(addr ?? '');
    if (!family || extra !== undefined) return false;
    if (bits === undefined) return true;
    return /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
  },
  { error: 'use an IP address or CIDR, e.g. "10.0.0.0/8" or "fd00::/8"' },
);

/** A token bucket: `burst` requests at once, refilled at `rps` per second, per client identity. */
const rateLimit = z
  .strictObject({
    rps: z.number({ error: 'use requests per second, e.g. 10 or 0.5' }).positive({ error: 'use a rate above 0' }).max(1_000_000),
    burst: z.int({ error: 'use a whole number of requests' }).min(1, { error: 'use at least 1' }).max(1_000_000).optional(),
  })
  .optional();

/** IP allow/deny lists: globally (checked at accept) and per site (checked at the ClientHello). */
const ipAccess = z
  .strictObject({
    allow: z.array(cidr, { error: 'list the IPs or CIDRs admitted, e.g. ["10.0.0.0/8", "2001:db8::/32"]' }).min(1, { error: 'an empty allow list admits nobody; list at least one CIDR, or remove allow' }).optional(),
    deny: z.array(cidr, { error: 'list the IPs or CIDRs refused, e.g. ["203.0.113.0/24"]' }).optional(),
  })
  .optional();

export const builtinUpstreams = ['builtin:whoami'] as const;

function upstreamProblem(v: string): string | null {
  if ((builtinUpstreams as readonly string[]).includes(v)) return null;
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    return `use an http:// or https:// URL such as "https://10.0.0.5:9001", or one of ${builtinUpstreams.join(', ')}`;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    return `the scheme ${url.protocol} is not an upstream scheme; use http:// or https://`;
  if (url.username || url.password) return 'remove the user:password part; upstream credentials do not go in URLs';
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash)
    return 'an upstream URL is an origin only (scheme://host:port); the request path is forwarded as received';
  return null;
}

const upstreamUrl = z.string({ error: 'use an upstream URL string' }).superRefine((v, ctx) => {
  const problem = upstreamProblem(v);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

/** Header names the identity header may not take: the proxy or the protocol sets them. */
const reservedHeaders = new Set(['host', 'connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'content-length', 'content-type', 'x-request-id', 'forwarded', 'authorization', 'cookie', 'proxy-authorization', 'proxy-connection', 'expect', 'http2-settings']);
/** Fields the protocol or the proxy owns (lower case): never a header of the config's choosing. */
const isReservedHeader = (name: string) => reservedHeaders.has(name) || name.startsWith('x-forwarded-');

const uriPattern = z
  .string({ error: 'use a URI, optionally ending in *' })
  .refine((v) => /^[a-z][a-z0-9+.-]*:[^*]*(\/\*)?$/i.test(v) && !/\/\.\.?(\/|\*?$)/.test(v), {
    error: 'use a URI such as "spiffe://example.test/billing/api"; "*" may only end it, right after "/" ("…/billing/*"), as a prefix match over whole path segments',
  })
  // such a pattern could match nothing: client certificate URIs holding these are refused (docs/mtls.md)
  .refine((v) => !hasAmbiguousEncoding(v), {
    error: 'a URI with %2E, %2F or %5C (an encoded ".", "/" or "\\") or a backslash matches no client certificate (such URIs are refused as suspicious); write the URI with plain characters',
  });

const dnsPattern = z
  .string({ error: 'use a DNS name or "*." wildcard' })
  .refine((v) => normaliseSiteHost(v) !== null && isIP(v) === 0, { error: 'use a DNS name, or "*." over one whole label ("*.clients.example.test")' });

const subjectPattern = z
  .string({ error: 'use a distinguished name such as "CN=reporting,O=Example"' })
  .refine((v) => parseSubjectPattern(v) !== null, { error: 'use attribute=value pairs separated by commas, e.g. "CN=reporting,O=Example" (escape a comma in a value as \\,)' });

const fingerprint = z
  .string({ error: 'use "sha256:" followed by the certificate\'s SHA-256 in hex' })
  .refine((v) => normaliseFingerprint(v) !== null, {
    error: 'use "sha256:" and 64 hex digits, colons optional (openssl x509 -noout -fingerprint -sha256 -in cert.pem)',
  });

const route = z.strictObject({
  path: z
    .string({ error: 'use a path prefix starting with "/", e.g. "/payments/"' })
    .regex(/^\/[\x21-\x7e]*$/, { error: 'use a path prefix starting with "/" without spaces, e.g. "/payments/"', abort: true })
    .superRefine((v, ctx) => {
      // requests are routed in normal form, so a prefix in any other form could never match
      const normal = normalisePath(v);
      if (v.includes('?')) ctx.addIssue({ code: 'custom', message: 'a route path has no query; remove the "?" part' });
      else if (!normal.ok) ctx.addIssue({ code: 'custom', message: 'requests with this path are refused (encoded slash, backslash or "..;"); use a plain path prefix' });
      else if (normal.path !== v) ctx.addIssue({ code: 'custom', message: `requests are matched in normal form; write it as "${normal.path}"` });
    }),
  upstream: z.union([upstreamUrl, z.array(upstreamUrl).min(1, { error: 'list at least one upstream URL' })], {
    error: 'use an upstream URL or a list of them',
  }),
  upstreamTls: z
    .strictObject({
      ca: path.optional(),
      serverName: z
        .string()
        .refine((v) => normaliseSiteHost(v) !== null && !v.startsWith('*.'), { error: 'use the DNS name or IP the upstream certificate carries' })
        .optional(),
      cert: path.optional(),
      key: path.optional(),
    })
    .optional(),
  clientCert: z.enum(['required', 'optional'], { error: 'use "required" or "optional"' }).optional(),
  allow: z
    .strictObject({
      uri: z.array(uriPattern, { error: 'list URI SANs, e.g. ["spiffe://example.test/billing/*"]' }).optional(),
      dns: z.array(dnsPattern, { error: 'list DNS SANs, e.g. ["*.clients.example.test"]' }).optional(),
      subject: z.array(subjectPattern, { error: 'list subjects, e.g. ["CN=reporting,O=Example"]' }).optional(),
      fingerprints: z.array(fingerprint, { error: 'list fingerprints, e.g. ["sha256:3F:1A:…"]' }).optional(),
    })
    .refine((a) => (a.uri?.length ?? 0) + (a.dns?.length ?? 0) + (a.subject?.length ?? 0) + (a.fingerprints?.length ?? 0) > 0, {
      error: 'an allow-list with no entry admits nobody; list at least one uri, dns, subject or fingerprint, or remove allow',
    })
    .optional(),
  rateLimit,
  apiKeys: z.enum(['required', 'optional', 'off'], { error: 'use "required" (no valid key, 401), "optional" (a presented key must be valid) or "off"' }).default('off'),
});

const certificateSource = z.strictObject({
  cert: path.optional(),
  key: path.optional(),
  internal: z.literal(true, { error: 'use internal: true (a certificate issued and renewed by the built-in CA), or give cert: and key:' }).optional(),
  acme: z
    .strictObject({
      email: z.email({ error: 'use the contact address the ACME CA may write to about the account, e.g. ops@example.test' }),
      directory: z.url({ protocol: /^https$/, error: 'use the https:// URL of the ACME directory, e.g. https://acme-v02.api.letsencrypt.org/directory' }),
      ca: path.optional(),
      challenge: z.enum(['http-01', 'tls-alpn-01'], { error: 'use "http-01" (answered by the listen.http redirect listener) or "tls-alpn-01" (answered on listen.https)' }).default('http-01'),
    })
    .optional(),
});

const site = z.strictObject({
  hosts: z.array(siteHost, { error: 'list the host names this site serves' }).min(1, { error: 'list at least one host' }),
  default: z.boolean({ error: 'use true or false' }).default(false),
  certificates: z
    .array(certificateSource, { error: 'list the site certificates as {cert, key} entries' })
    .min(1, { error: 'list at least one certificate ({cert: file, key: file})' }),
  hsts: z
    .strictObject({
      maxAge: z.int({ error: 'use a whole number of seconds' }).min(0).max(63_072_000, { error: 'use at most 63072000 (two years)' }).default(31_536_000),
      includeSubDomains: z.boolean({ error: 'use true or false' }).default(true),
      preload: z.boolean({ error: 'use true or false' }).default(false),
    })
    .prefault({}),
  clientAuth: z
    .strictObject({
      mode: z.enum(['require', 'optional'], { error: 'use "require" (no valid certificate, no service) or "optional" (routes decide)' }),
      refuseAt: z
        .enum(['http', 'handshake'], { error: 'use "http" (the handshake completes and each request gets 401/403 with the reason) or "handshake" (no certificate: the handshake fails with certificate_required; an invalid one: closed before any request)' })
        .default('http'),
      ca: z.array(path, { error: 'list the CA certificate files that issue client certificates' }).min(1, { error: 'list at least one CA certificate file' }),
      verifyDepth: z.int({ error: 'use a whole number' }).min(1, { error: 'use at least 1' }).max(10, { error: 'use at most 10' }).default(4),
      forwardHeader: z
        .string({ error: 'use a header name' })
        .regex(/^[a-z0-9][a-z0-9-]*$/i, { error: 'use a header name of letters, digits and "-", e.g. "x-client-cert"', abort: true })
        .refine((v) => !isReservedHeader(v.toLowerCase()), {
          error: 'this header is set by the proxy or the protocol; choose another name, e.g. "x-client-cert"',
        })
        .default('x-client-cert'),
      crl: z
        .array(z.string({ error: 'use a CRL file path or an http(s) URL' }).min(1, { error: 'use a non-empty CRL file path or URL' }), {
          error: 'list CRL files or http(s) URLs (an empty list checks only the distribution points named in client certificates)',
        })
        .optional(),
      ocsp: z.boolean({ error: 'use true (ask each client certificate\'s OCSP responder) or false' }).default(false),
      ocspResponder: z
        .url({ protocol: /^https?$/, error: 'use an http(s) URL of an OCSP responder, e.g. "http://ocsp.example.test"' })
        .optional(),
      onRevocationUnavailable: z
        .enum(['reject', 'allow'], { error: 'use "reject" (no fresh CRL or OCSP answer, no service; the default) or "allow" (admit and log a warning)' })
        .default('reject'),
    })
    .optional(),
  routes: z.array(route, { error: 'list the routes of the site' }).min(1, { error: 'list at least one route' }),
  ipAccess,
  rateLimit,
});

export const configSchema = z.strictObject({
  tls: z
    .strictObject({
      profile: z.enum(['intermediate', 'modern'], { error: 'use "intermediate" (TLS 1.2 + 1.3) or "modern" (TLS 1.3 only)' }).default('intermediate'),
      postQuantum: z
        .enum(['preferred', 'required'], { error: 'use "preferred" (X25519MLKEM768 first where the runtime has it, classical groups too) or "required" (X25519MLKEM768 only; needs profile: modern)' })
        .default('preferred'),
      ticketKeyRotation: duration('1m', '12h').default('12h'),
      rotationMinValidity: duration('1m', '90d').default('1d'),
      expiryWarnings: z
        .array(duration('1m', '365d'), { error: 'list how long before expiry to warn, e.g. ["30d", "14d", "7d", "1d"]' })
        .max(10, { error: 'list at most 10 thresholds' })
        .default(['30d', '14d', '7d', '1d']),
      clientInventoryWindow: duration('1d', '365d').default('30d'),
    })
    .prefault({}),
  listen: z.strictObject(
    {
      https: listenAddress,
      http: listenAddress.optional(),
      admin: listenAddress.optional(),
      // PROXY protocol senders (L4 balancers): their connections must start with a header, whose client address is then believed
      proxyProtocol: z
        .array(cidr, { error: 'list the addresses or CIDRs of the load balancers that send a PROXY header, e.g. ["10.0.0.0/8", "127.0.0.1"]' })
        .refine((list) => !list.some((entry) => entry.includes('/') && Number(entry.split('/')[1]) === 0), {
          error: 'a /0 believes a PROXY header from anyone, so any client could choose the address it is judged by; list only the addresses of your load balancers',
        })
        .default([]),
    },
    { error: 'add listen: {https: "127.0.0.1:8443"}' },
  ),
  workers: z
    .union([z.int().min(1, { error: 'use at least 1 worker' }).max(256, { error: 'use at most 256 workers' }), z.literal('auto')], {
      error: 'use a number of worker processes, or "auto" for one per core',
    })
    .default(1),
  trustedProxies: z.array(cidr, { error: 'list CIDRs, e.g. ["10.0.0.0/8"]' }).default([]),
  ipAccess,
  apiKeyHeader: z
    .string({ error: 'use a header name' })
    .regex(/^[a-z0-9][a-z0-9-]*$/i, { error: 'use a header name of letters, digits and "-", e.g. "authorization" (Bearer) or "x-api-key"', abort: true })
    .refine((v) => v.toLowerCase() === 'authorization' || !isReservedHeader(v.toLowerCase()), { error: 'this header is set by the proxy or the protocol; use "authorization" or a header of your own, e.g. "x-api-key"' })
    .transform((v) => v.toLowerCase())
    .default('authorization'),
  detector: z
    .strictObject({
      threshold: z.int({ error: 'use a whole number of failures' }).min(2, { error: 'use at least 2: one mistake must not lock a client out' }).max(100_000).default(20),
      window: duration('1s', '1h').default('1m'),
      blockFor: duration('1s', '24h').default('10m'),
      // loopback: health checks and sidecars on this machine (a local attacker has easier ways in)
      allow: z.array(cidr, { error: 'list CIDRs that are never blocked, e.g. ["10.0.0.0/8"]' }).default(['127.0.0.0/8', '::1']),
      webhook: z.url({ protocol: /^https?$/, error: 'use the https:// URL that receives alerts as JSON POSTs' }).optional(),
      fingerprint: z
        .strictObject({
          threshold: z.int({ error: 'use a whole number of failures' }).min(2, { error: 'use at least 2: one mistake must not flag a client' }).max(1_000_000).default(100),
          // off by default: every client of one TLS library shares a JA4, and a JA4 is easy to imitate
          block: z.boolean({ error: 'use true or false' }).default(false),
        })
        .prefault({}),
    })
    .prefault({}),
  state: z
    .strictObject({
      backend: z.enum(['memory', 'redis'], { error: 'use "memory" (one instance) or "redis" (a cluster of instances sharing one state)' }).default('memory'),
      redis: z.string({ error: 'use a Redis URL, e.g. "redis://127.0.0.1:6379/0" or "rediss://user:password@redis.internal:6380/0"' }).optional(),
      sentinels: z.array(listenAddress, { error: 'list Redis Sentinel addresses, e.g. ["10.0.0.1:26379", "10.0.0.2:26379"]' }).min(1, { error: 'list at least one Sentinel, or remove state.sentinels' }).optional(),
      cluster: z
        .string({ error: 'use a name for this cluster, e.g. "edge-prod"' })
        .regex(/^[A-Za-z0-9._-]{1,64}$/, { error: 'use 1 to 64 letters, digits and "._-", e.g. "edge-prod"' })
        .default('portcullis'),
      passwordFile: path.optional(),
      ca: path.optional(),
      cert: path.optional(),
      key: path.optional(),
    })
    .prefault({}),
  dataDir: path.default(defaultDataDir),
  ca: z
    .strictObject({
      crlPath: z
        .string({ error: 'use a URL path, e.g. "/pki/ca.crl"' })
        .regex(/^\/[A-Za-z0-9._~/-]*$/, { error: 'use a URL path of letters, digits and "/._~-", starting with "/", e.g. "/pki/ca.crl"' })
        .optional(),
    })
    .prefault({}),
  timeouts: z
    .strictObject({
      handshake: duration('1s', '5m').default('10s'),
      headers: duration('1s', '10m').default('30s'),
      request: duration('1s', '24h').default('300s'),
      idle: duration('1s', '1h').default('60s'),
      send: duration('1s', '1h').default('60s'),
      drain: duration('0s', '1h').default('30s'),
      upstreamConnect: duration('100ms', '5m').default('10s'),
      upstreamResponse: duration('1s', '1h').default('60s'),
      upstreamIdle: duration('1s', '24h').default('300s'),
    })
    .prefault({}),
  log: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace'], { error: 'use fatal, error, warn, info, debug or trace' }).default('info'),
      access: z
        .string({ error: 'use stdout, stderr, off or a file path' })
        .min(1, { error: 'use stdout, stderr, off or a file path' })
        .default('stdout'),
    })
    .prefault({}),
  limits: z
    .strictObject({
      maxHeaderBytes: z.int({ error: 'use a number of bytes' }).min(1024, { error: 'use at least 1024' }).max(1_048_576, { error: 'use at most 1048576' }).default(16_384),
      maxHeaderFields: z.int({ error: 'use a number of header fields' }).min(16, { error: 'use at least 16' }).max(10_000, { error: 'use at most 10000' }).default(100),
      maxConcurrentStreams: z.int({ error: 'use a number of streams' }).min(1, { error: 'use at least 1' }).max(1000, { error: 'use at most 1000' }).default(100),
      maxUpstreamConnections: z.int({ error: 'use a number of connections' }).min(1, { error: 'use at least 1' }).max(10_000, { error: 'use at most 10000' }).default(256),
    })
    .prefault({}),
  sites: z.array(site, { error: 'list at least one site' }).min(1, { error: 'list at least one site' }),
});

export type RawConfig = z.output<typeof configSchema>;
export type RawSite = RawConfig['sites'][number];
export type RawRoute = RawSite['routes'][number];
export type RawClientAuth = NonNullable<RawSite['clientAuth']>;
export type RawUpstreamTls = NonNullable<RawRoute['upstreamTls']>;

/** JSON Schema of the file format, for editors (`portcullis schema`). */
export function configJsonSchema(): unknown {
  return z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' });
}
