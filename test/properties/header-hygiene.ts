import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { BlockList, isIPv4 } from 'node:net';
import fc from 'fast-check';
import { clientResponseHeaders, upstreamRequestHeaders, type ForwardingFacts } from '../../src/proxy/header-hygiene.js';
import { propertyCase, type PropertySuite } from './harness.js';

/**
 * Header hygiene properties. Incoming header maps are what Node hands over
 * (names in lower case, values a string or a list); names are generated in
 * any case and lower-cased as Node's HTTP/1.1 and HTTP/2 parsers do.
 */

const hopByHop = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings', 'expect'];
const ours = ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-request-id'];
const proxyClaims = ['forwarded', 'x-real-ip', 'true-client-ip', 'x-client-ip', 'x-cluster-client-ip', 'cf-connecting-ip', 'fastly-client-ip', 'x-original-url', 'x-rewrite-url', 'x-original-host', 'x-forwarded-port', 'x-forwarded-prefix', 'x-forwarded-server', 'x-forwarded-ssl'];
const identityNames = ['x-client-cert', 'x-partner', 'x-client-identity'];
const credentialNames = ['authorization', 'x-api-key', 'x-key'];
const special = new Set([...hopByHop, ...ours, ...proxyClaims, ...identityNames, ...credentialNames, 'host', 'cookie', 'proxy', 'strict-transport-security']);
const canonical = (name: string) => name.replace(/_/g, '-');

const key = fc.stringMatching(/^[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/).map((s) => `pck_${s}`);
const token = fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^`|~-]{1,16}$/);
/** Field values a client may send: printable text, sometimes one of our API keys inside. */
const fieldText = fc.oneof(
  fc.string({ unit: fc.constantFrom(...' !"#$%&()*+,-./0123456789:;<=>?@ABCXYZabcxyz[]^_`{|}~é'.split('')), maxLength: 30 }),
  key,
  key.map((k) => `Bearer ${k}`),
  fc.tuple(fc.string({ maxLength: 10 }), key).map(([a, k]) => `${a}${k}`),
  fc.constantFrom('Basic dXNlcjpwYXNz', 'Bearer eyJhbGciOi.payload.sig', 'close', 'keep-alive', 'chunked', 'h2c', 'websocket', '100-continue'),
);
const fieldValue: fc.Arbitrary<string | string[]> = fc.oneof({ weight: 4, arbitrary: fieldText }, { weight: 1, arbitrary: fc.array(fieldText, { minLength: 1, maxLength: 3 }) });

/** Header names: the special ones, in CGI spelling (underscores) too, and unrelated ones; in any case (lower-cased later, as Node does). */
const specialName = fc.constantFrom(...special).chain((n) => fc.oneof(fc.constant(n), fc.constant(n.replace(/-/g, '_'))));
const unrelatedName = fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/).filter((n) => !special.has(n) && !n.startsWith('x-forwarded-'));
/** An unrelated name in either spelling (a Connection token may name a field in the other one). */
const unrelatedAnySpelling = unrelatedName.chain((n) => fc.constantFrom(n, n.replace(/-/g, '_')));
const headerName = fc.mixedCase(fc.oneof(specialName, unrelatedName, unrelatedAnySpelling, fc.constantFrom(':path', ':authority', ':method')));

interface RequestCase {
  readonly incoming: IncomingHttpHeaders;
  readonly facts: ForwardingFacts;
  /** Whether the client address is in the trusted proxies. */
  readonly trusted: boolean;
}

const address = fc.oneof(fc.ipV4(), fc.ipV6(), fc.ipV4().map((a) => `::ffff:${a}`));

const requestCase: fc.Arbitrary<RequestCase> = fc
  .record({
    fields: fc.array(fc.tuple(headerName, fieldValue), { maxLength: 14 }),
    connection: fc.option(fc.array(fc.oneof(headerName, token, fc.constantFrom('close', 'keep-alive', 'Upgrade')), { maxLength: 4 }), { freq: 3 }),
    /** Fields of the request also listed in Connection, some in the other spelling ("x-a" sent, "x_a" listed). */
    listFields: fc.array(fc.tuple(fc.nat(), fc.boolean()), { maxLength: 3 }),
    clientAddress: address,
    trusted: fc.constantFrom('none', 'client', 'other'),
    identityHeader: fc.constantFrom(...identityNames),
    identity: fc.option(fc.constantFrom('URI=spiffe://example.test/billing', 'Subject="CN=a"'), { nil: null }),
    apiKeyHeader: fc.constantFrom('authorization', 'x-api-key'),
    keyRoute: fc.boolean(),
    requestId: fc.uuid(),
    authority: fc.constantFrom('api.test', 'api.test:8443', '[::1]:8443'),
  })
  .map((r) => {
    const incoming: IncomingHttpHeaders = {};
    for (const [name, value] of r.fields) incoming[name.toLowerCase()] = value;
    const flip = (name: string) => (name.includes('_') ? name.replace(/_/g, '-') : name.replace(/-/g, '_'));
    const listedFields = r.fields.length ? r.listFields.map(([i, other]) => ((n) => (other ? flip(n) : n))((r.fields[i % r.fields.length] as [string, unknown])[0])) : [];
    const tokens = [...(r.connection ?? []), ...listedFields];
    if (r.connection || tokens.length) incoming.connection = tokens.map((t, i) => (i % 2 ? ` ${t} ` : t)).join(',');
    let trustedProxies: BlockList | null = null;
    // an IPv4 client may come as an IPv4-mapped IPv6 address; the list names it in IPv4
    const plain = r.clientAddress.startsWith('::ffff:') && isIPv4(r.clientAddress.slice(7)) ? r.clientAddress.slice(7) : r.clientAddress;
    const family = isIPv4(plain) ? 'ipv4' : 'ipv6';
    if (r.trusted !== 'none') {
      trustedProxies = new BlockList();
      if (r.trusted === 'client') trustedProxies.addAddress(plain, family);
      else trustedProxies.addSubnet('203.0.113.0', 24, 'ipv4');
    }
    const trusted = trustedProxies !== null && trustedProxies.check(plain, family);
    const facts: ForwardingFacts = {
      clientAddress: r.clientAddress,
      authority: r.authority,
      requestId: r.requestId,
      trustedProxies,
      identityHeaders: new Set(['x-client-cert', r.identityHeader]),
      identityHeader: r.identityHeader,
      identity: r.identity,
      apiKeyHeader: r.apiKeyHeader,
      keyRoute: r.keyRoute,
    };
    return { incoming, facts, trusted };
  });

const listedIn = (incoming: IncomingHttpHeaders, spelling: (name: string) => string = (n) => n) =>
  new Set(
    [incoming.connection ?? []]
      .flat()
      .join(',')
      .split(',')
      .map((t) => spelling(t.trim().toLowerCase()))
      .filter(Boolean),
  );

/** Fields the proxy itself sets after the filtering, whatever the client listed or sent. */
const setByProxy = (facts: ForwardingFacts) => new Set(['host', ...ours, ...(facts.identity !== null ? [facts.identityHeader] : [])]);

const hasKey = (v: string | string[] | number | undefined) => [v ?? []].flat().some((x) => String(x).includes('pck_'));

function checkRequest({ incoming, facts, trusted }: RequestCase): void {
  const out = upstreamRequestHeaders(incoming, facts);
  // compared in CGI spelling, as upstreams behind CGI-style stacks read them: "Connection: x_a" names x-a too
  const listed = listedIn(incoming, canonical);
  const proxySet = setByProxy(facts);
  for (const name of Object.keys(out)) {
    const c = canonical(name);
    assert.ok(!hopByHop.includes(name), `hop-by-hop ${name} forwarded`);
    assert.ok(!name.startsWith(':'), `pseudo-header ${name} forwarded`);
    if (!proxySet.has(name)) assert.ok(!listed.has(c), `${name} is listed in Connection (in some spelling) and was forwarded`);
    // identity: only the proxy's own value, in its own spelling
    if (facts.identityHeaders.has(c) && !(name === facts.identityHeader && facts.identity !== null)) assert.fail(`client-supplied identity header ${name} forwarded`);
    if (c === 'authorization' || c === facts.apiKeyHeader) assert.ok(!hasKey(out[name]), `${name} carries a pck_ key upstream`);
    if (facts.keyRoute && c === facts.apiKeyHeader) assert.fail(`the key header ${name} of a key route was forwarded`);
    if (!trusted && !ours.includes(name) && (proxyClaims.includes(c) || c.startsWith('x-forwarded-'))) assert.fail(`proxy claim ${name} from an untrusted client forwarded`);
    if (ours.includes(c) && name !== c) assert.fail(`${name}, a CGI spelling of ${c}, forwarded`);
  }
  assert.equal(out.host, facts.authority);
  assert.equal(out['x-request-id'], facts.requestId);
  assert.equal(out[facts.identityHeader], facts.identity ?? undefined);
  const xff = out['x-forwarded-for'] as string;
  const prior = incoming['x-forwarded-for'];
  assert.equal(xff, trusted && prior ? `${[prior].flat().join(', ')}, ${facts.clientAddress}` : facts.clientAddress);
  const first = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);
  assert.equal(out['x-forwarded-proto'], (trusted && first(incoming['x-forwarded-proto'])) || 'https');
  assert.equal(out['x-forwarded-host'], (trusted && first(incoming['x-forwarded-host'])) || facts.authority);
  // unrelated fields pass unchanged (cookies joined into one field, as HTTP/2 allows)
  for (const [name, value] of Object.entries(incoming)) {
    if (special.has(canonical(name)) || name.startsWith(':') || canonical(name).startsWith('x-forwarded-') || listed.has(canonical(name))) continue;
    assert.deepEqual(out[name], value, `unrelated field ${name} changed`);
  }
  if (incoming.cookie !== undefined && !listed.has('cookie')) assert.equal(out.cookie, [incoming.cookie].flat().join('; '));
}

const responseCase = fc.record({
  fields: fc.array(fc.tuple(fc.mixedCase(fc.oneof(fc.constantFrom(...hopByHop, 'strict-transport-security', 'x-request-id', 'set-cookie', 'content-type', 'content-length'), unrelatedName)), fieldValue), { maxLength: 12 }),
  connection: fc.option(fc.array(fc.oneof(unrelatedName, fc.constantFrom('close', 'keep-alive', 'strict-transport-security', 'x-request-id', 'set-cookie')), { maxLength: 3 }), { freq: 3 }),
  hsts: fc.option(fc.constantFrom('max-age=31536000; includeSubDomains', 'max-age=0'), { nil: null }),
  requestId: fc.uuid(),
});

function checkResponse(r: { fields: [string, string | string[]][]; connection: string[] | null; hsts: string | null; requestId: string }): void {
  const upstream: IncomingHttpHeaders = {};
  for (const [name, value] of r.fields) upstream[name.toLowerCase()] = value;
  if (r.connection) upstream.connection = r.connection.join(', ');
  const out = clientResponseHeaders(upstream, r.hsts, r.requestId);
  const listed = listedIn(upstream);
  assert.equal(out['strict-transport-security'], r.hsts ?? undefined, 'HSTS is always the site\'s');
  assert.equal(out['x-request-id'], r.requestId);
  for (const name of Object.keys(out)) {
    assert.ok(!hopByHop.includes(name), `hop-by-hop ${name} relayed`);
    if (name !== 'strict-transport-security' && name !== 'x-request-id') assert.ok(!listed.has(name), `${name} is listed in Connection and was relayed`);
  }
  for (const [name, value] of Object.entries(upstream)) {
    if (hopByHop.includes(name) || listed.has(name) || name === 'strict-transport-security' || name === 'x-request-id') continue;
    assert.deepEqual(out[name], value, `${name} changed on the way to the client`);
  }
}

/**
 * Finding F3 (fixed): hop-by-hop fields in CGI spelling (`proxy_authorization`,
 * `transfer_encoding`) and the `Proxy` field reached the upstream. CGI-style
 * stacks read them as HTTP_PROXY_AUTHORIZATION, HTTP_TRANSFER_ENCODING and
 * HTTP_PROXY ("httpoxy", CVE-2016-5385: an HTTP_PROXY environment variable
 * sends the application's own outgoing requests through the client's proxy).
 */
function checkCgiSpellings({ incoming, facts }: RequestCase): void {
  const out = upstreamRequestHeaders(incoming, facts);
  const listed = listedIn(incoming, canonical);
  for (const name of Object.keys(out)) {
    assert.ok(!hopByHop.includes(canonical(name)), `${name}, a CGI spelling of a hop-by-hop field, forwarded`);
    assert.notEqual(name, 'proxy', 'the Proxy field (httpoxy) forwarded');
    if (!setByProxy(facts).has(name)) assert.ok(!listed.has(canonical(name)), `${name} is listed in Connection in another spelling and was forwarded`);
  }
}

export const headerHygieneProperties: PropertySuite<void> = {
  target: 'header-hygiene',
  title: 'header hygiene (properties)',
  open: async () => {},
  close: async () => {},
  cases: [
    propertyCase(
      'upstream request fields never carry hop-by-hop or Connection-listed fields, client-supplied identity or forwarding claims, or pck_ keys; always the proxy\'s own Host, X-Forwarded-* and X-Request-Id; unrelated fields unchanged',
      1000,
      () => fc.property(requestCase, checkRequest),
    ),
    propertyCase('response fields to the client never carry hop-by-hop or Connection-listed fields; HSTS is always the site\'s and X-Request-Id the proxy\'s; the rest unchanged', 1000, () => fc.property(responseCase, checkResponse)),
    propertyCase(
      'hop-by-hop fields in CGI spelling, fields listed in Connection in either spelling, and the Proxy field (httpoxy) never reach the upstream (F3)',
      500,
      () => fc.property(requestCase, checkCgiSpellings),
    ),
  ],
};
