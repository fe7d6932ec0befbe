import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import YAML from 'yaml';
import { configJsonSchema, parseConfigText, type Config } from '../../src/config/index.js';
import { ConfigError, PortcullisError } from '../../src/errors.js';
import { TestPki } from '../helpers/pki.js';
import { propertyCase, within, type PropertySuite } from './harness.js';

/**
 * Config loader properties: generated valid configs load and keep their
 * values; random documents and mutations of valid ones either load into a
 * frozen config or are refused with a coded error naming the problem.
 */

interface ConfigContext {
  readonly dir: string;
  /** Where the YAML is said to come from (relative paths start there). */
  readonly source: string;
  /** An ECDSA and an RSA certificate for fuzz.test and *.fuzz.test, and a client CA. */
  readonly ecCert: { cert: string; key: string };
  readonly rsaCert: { cert: string; key: string };
  readonly clientCa: string;
  readonly pki: TestPki;
}

const units = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
type Unit = keyof typeof units;
const ms = (text: string) => Number(/^\d+/.exec(text)![0]) * units[/[a-z]+$/.exec(text)![0] as Unit];

interface Duration {
  readonly text: string;
  readonly ms: number;
}

/** A duration string in [min, max], in any unit that can express one, sometimes with leading zeros. */
function durationArb(min: string, max: string): fc.Arbitrary<Duration> {
  const lo = ms(min);
  const hi = ms(max);
  const usable = (Object.keys(units) as Unit[]).filter((u) => Math.ceil(lo / units[u]) <= Math.floor(hi / units[u]));
  return fc
    .tuple(fc.constantFrom(...usable), fc.double({ min: 0, max: 1, noNaN: true }), fc.constantFrom('', '', '', '0', '00'))
    .map(([unit, f, zeros]) => {
      const first = Math.ceil(lo / units[unit]);
      const last = Math.floor(hi / units[unit]);
      const n = Math.min(last, first + Math.floor(f * (last - first + 1)));
      return { text: `${zeros}${n}${unit}`, ms: n * units[unit] };
    });
}

const durations = {
  tls: { ticketKeyRotation: ['1m', '12h', '12h'], rotationMinValidity: ['1m', '90d', '1d'], clientInventoryWindow: ['1d', '365d', '30d'] },
  detector: { window: ['1s', '1h', '1m'], blockFor: ['1s', '24h', '10m'] },
  timeouts: {
    handshake: ['1s', '5m', '10s'],
    headers: ['1s', '10m', '30s'],
    request: ['1s', '24h', '300s'],
    idle: ['1s', '1h', '60s'],
    send: ['1s', '1h', '60s'],
    drain: ['0s', '1h', '30s'],
    upstreamConnect: ['100ms', '5m', '10s'],
    upstreamResponse: ['1s', '1h', '60s'],
    upstreamIdle: ['1s', '24h', '300s'],
  },
} as const;

/** Optional durations of a section: each key present or not. */
function durationSection<K extends string>(table: Readonly<Record<K, readonly [string, string, string]>>): fc.Arbitrary<Partial<Record<K, Duration>>> {
  const keys = Object.keys(table) as K[];
  return fc.record(Object.fromEntries(keys.map((k) => [k, durationArb(table[k][0], table[k][1])])) as Record<K, fc.Arbitrary<Duration>>, { requiredKeys: [] });
}

const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?$/);
/** Mixed case: hosts are compared in lower case. */
const anyCase = (arb: fc.Arbitrary<string>) => fc.mixedCase(arb);
const segment = fc.stringMatching(/^[a-z0-9][a-zA-Z0-9._~-]{0,10}$/);
/** Route paths in normal form ("/", "/a", "/a/b/"). */
const routePath = fc.tuple(fc.array(segment, { maxLength: 3 }), fc.boolean()).map(([segs, slash]) => (segs.length === 0 ? '/' : `/${segs.join('/')}${slash ? '/' : ''}`));
const port = fc.integer({ min: 0, max: 65535 });
const listenArb = fc.tuple(fc.constantFrom('127.0.0.1', '0.0.0.0', '[::1]', 'localhost', '[::]'), port).map(([h, p]) => ({ text: `${h}:${p}`, host: h.replace(/^\[|\]$/g, ''), port: p }));
const upstreamUrl = fc.tuple(fc.constantFrom('http', 'https'), fc.constantFrom('127.0.0.1', 'upstream.test', '[::1]', '10.0.0.5'), fc.option(port, { nil: undefined }), fc.boolean()).map(([scheme, host, p, slash]) => `${scheme}://${host}${p === undefined ? '' : `:${p}`}${slash ? '/' : ''}`);

interface RouteSpec {
  readonly path: string;
  readonly upstream: string | readonly string[];
  readonly apiKeys?: 'required' | 'optional' | 'off';
  readonly rateLimit?: { rps: number; burst?: number };
  readonly clientCert?: 'required' | 'optional';
  readonly allowUri?: readonly string[];
}

const rateLimitArb = fc.record({ rps: fc.oneof(fc.integer({ min: 1, max: 1000 }), fc.double({ min: 0.01, max: 1000, noNaN: true })), burst: fc.integer({ min: 1, max: 10_000 }) }, { requiredKeys: ['rps'] });

const routeArb = (mtls: boolean): fc.Arbitrary<RouteSpec> =>
  fc.record(
    {
      path: routePath,
      upstream: fc.oneof(fc.constant('builtin:whoami'), upstreamUrl, fc.uniqueArray(upstreamUrl, { minLength: 1, maxLength: 3, selector: (u) => new URL(u).origin })),
      apiKeys: fc.constantFrom('required' as const, 'optional' as const, 'off' as const),
      rateLimit: rateLimitArb,
      ...(mtls ? { clientCert: fc.constantFrom('required' as const, 'optional' as const), allowUri: fc.array(fc.constantFrom('spiffe://fuzz.test/billing/*', 'spiffe://fuzz.test/ops'), { minLength: 1, maxLength: 2 }) } : {}),
    },
    { requiredKeys: ['path', 'upstream'] },
  );

interface SiteSpec {
  readonly kind: 'files' | 'acme';
  readonly labels: readonly string[];
  readonly rsaToo: boolean;
  readonly isDefault?: boolean;
  readonly hsts: { maxAge?: number; includeSubDomains?: boolean; preload?: boolean };
  readonly clientAuth?: { mode: 'require' | 'optional'; verifyDepth?: number; forwardHeader?: string };
  readonly routes: readonly RouteSpec[];
}

const siteArb: fc.Arbitrary<SiteSpec> = fc
  .record({
    kind: fc.constantFrom('files' as const, 'acme' as const),
    labels: fc.array(anyCase(label), { minLength: 1, maxLength: 3 }),
    rsaToo: fc.boolean(),
    hsts: fc.record({ maxAge: fc.integer({ min: 0, max: 63_072_000 }), includeSubDomains: fc.boolean(), preload: fc.boolean() }, { requiredKeys: [] }),
    clientAuth: fc.option(fc.record({ mode: fc.constantFrom('require' as const, 'optional' as const), verifyDepth: fc.integer({ min: 1, max: 10 }), forwardHeader: fc.constantFrom('x-client-cert', 'X-Client-Identity', 'x-partner') }, { requiredKeys: ['mode'] }), { nil: undefined }),
  })
  .chain((s) => fc.uniqueArray(routeArb(s.clientAuth !== undefined), { minLength: 1, maxLength: 4, selector: (r) => r.path }).map((routes) => ({ ...s, routes })))
  // preload needs a year and subdomains: a mismatch is a config error, not what this generator is for
  .map((s) => (s.hsts.preload && ((s.hsts.maxAge ?? 31_536_000) < 31_536_000 || s.hsts.includeSubDomains === false) ? { ...s, hsts: { ...s.hsts, preload: false } } : s));

interface ConfigSpec {
  readonly https: { text: string; host: string; port: number };
  readonly workers?: number | 'auto';
  readonly apiKeyHeader?: string;
  readonly profile?: 'intermediate' | 'modern';
  readonly tls: Partial<Record<keyof typeof durations.tls, Duration>>;
  readonly expiryWarnings?: readonly Duration[];
  readonly detector: Partial<Record<keyof typeof durations.detector, Duration>>;
  readonly threshold?: number;
  readonly timeouts: Partial<Record<keyof typeof durations.timeouts, Duration>>;
  readonly limits: { maxHeaderBytes?: number; maxConcurrentStreams?: number; maxUpstreamConnections?: number };
  readonly logLevel?: string;
  readonly sites: readonly SiteSpec[];
  readonly defaultSite: number;
  readonly flow: 'yaml' | 'json' | 'flow';
}

const configSpecArb: fc.Arbitrary<ConfigSpec> = fc.record(
  {
    https: listenArb,
    workers: fc.oneof(fc.integer({ min: 1, max: 256 }), fc.constant('auto' as const)),
    apiKeyHeader: fc.constantFrom('authorization', 'Authorization', 'x-api-key', 'X-API-Key'),
    profile: fc.constantFrom('intermediate' as const, 'modern' as const),
    tls: durationSection(durations.tls),
    expiryWarnings: fc.array(durationArb('1m', '365d'), { maxLength: 10 }),
    detector: durationSection(durations.detector),
    threshold: fc.integer({ min: 2, max: 100_000 }),
    timeouts: durationSection(durations.timeouts),
    limits: fc.record({ maxHeaderBytes: fc.integer({ min: 1024, max: 1_048_576 }), maxConcurrentStreams: fc.integer({ min: 1, max: 1000 }), maxUpstreamConnections: fc.integer({ min: 1, max: 10_000 }) }, { requiredKeys: [] }),
    logLevel: fc.constantFrom('fatal', 'error', 'warn', 'info', 'debug', 'trace'),
    sites: fc.array(siteArb, { minLength: 1, maxLength: 3 }),
    defaultSite: fc.integer({ min: -1, max: 2 }),
    flow: fc.constantFrom('yaml' as const, 'json' as const, 'flow' as const),
  },
  { requiredKeys: ['https', 'tls', 'detector', 'timeouts', 'limits', 'sites', 'defaultSite', 'flow'] },
);

/** Host names of site `i`: unique over the whole config, covered by the test certificate (file sites) or plain names (ACME sites). */
const hostsOf = (site: SiteSpec, i: number) => site.labels.map((l, j) => (site.kind === 'files' ? `${l}-${i}-${j}.FUZZ.test` : `${l}-${i}-${j}.acme.test`));

const seconds = (d: Record<string, Duration | undefined>) => Object.fromEntries(Object.entries(d).map(([k, v]) => [k, v?.text]));

/** The raw config object of a spec, as a user would write it. */
function rawConfig(spec: ConfigSpec, ctx: ConfigContext): Record<string, unknown> {
  return {
    listen: { https: spec.https.text },
    ...(spec.workers !== undefined ? { workers: spec.workers } : {}),
    ...(spec.apiKeyHeader !== undefined ? { apiKeyHeader: spec.apiKeyHeader } : {}),
    tls: { ...(spec.profile ? { profile: spec.profile } : {}), ...seconds(spec.tls), ...(spec.expiryWarnings ? { expiryWarnings: spec.expiryWarnings.map((d) => d.text) } : {}) },
    detector: { ...seconds(spec.detector), ...(spec.threshold !== undefined ? { threshold: spec.threshold } : {}) },
    timeouts: seconds(spec.timeouts),
    limits: spec.limits,
    dataDir: 'state',
    ...(spec.logLevel ? { log: { level: spec.logLevel } } : {}),
    sites: spec.sites.map((s, i) => ({
      hosts: hostsOf(s, i),
      ...(i === spec.defaultSite ? { default: true } : {}),
      certificates:
        s.kind === 'acme'
          ? [{ acme: { email: 'ops@example.test', directory: 'https://acme.test/dir', challenge: 'tls-alpn-01' } }]
          : [ctx.ecCert, ...(s.rsaToo ? [ctx.rsaCert] : [])],
      hsts: s.hsts,
      ...(s.clientAuth ? { clientAuth: { ...s.clientAuth, ca: [ctx.clientCa] } } : {}),
      routes: s.routes.map((r) => {
        const { allowUri, ...rest } = r;
        const https = [r.upstream].flat().some((u) => u.startsWith('https:'));
        // an allow-list needs clientCert: required (an optional site defaults to it)
        const allowed = allowUri && (s.clientAuth?.mode === 'require' || r.clientCert !== 'optional');
        return { ...rest, ...(allowed ? { allow: { uri: allowUri } } : {}), ...(https && r.path.length % 2 === 0 ? { upstreamTls: { serverName: 'upstream.test' } } : {}) };
      }),
    })),
  };
}

function render(raw: unknown, flow: ConfigSpec['flow']): string {
  if (flow === 'json') return JSON.stringify(raw, null, 1);
  return YAML.stringify(raw, flow === 'flow' ? { collectionStyle: 'flow' } : {});
}

/** Every plain object and array of the config is frozen (class instances such as certificates keep their own encapsulation). */
function assertDeepFrozen(value: unknown, path = 'config'): void {
  if (value === null || typeof value !== 'object') return;
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== Array.prototype) return;
  assert.ok(Object.isFrozen(value), `${path} is not frozen`);
  for (const [k, v] of Object.entries(value)) assertDeepFrozen(v, `${path}.${k}`);
}

function checkLoaded(config: Config, spec: ConfigSpec): void {
  assertDeepFrozen(config);
  assert.deepEqual(config.listen.https, { host: spec.https.host, port: spec.https.port });
  const defaults = (table: Record<string, readonly [string, string, string]>, given: Record<string, Duration | undefined>) =>
    Object.fromEntries(Object.entries(table).map(([k, [, , d]]) => [`${k}Ms`, given[k]?.ms ?? ms(d)]));
  assert.deepEqual({ ...config.timeouts }, defaults(durations.timeouts, spec.timeouts));
  const tls = defaults(durations.tls, spec.tls);
  assert.equal(config.tls.ticketKeyRotationMs, tls.ticketKeyRotationMs);
  assert.equal(config.tls.rotationMinValidityMs, tls.rotationMinValidityMs);
  assert.equal(config.tls.clientInventoryWindowMs, tls.clientInventoryWindowMs);
  assert.deepEqual(config.tls.expiryWarningsMs, (spec.expiryWarnings?.map((d) => d.ms) ?? [30, 14, 7, 1].map((d) => d * units.d)).sort((a, b) => b - a));
  assert.equal(config.tls.profile.name ?? spec.profile ?? 'intermediate', spec.profile ?? 'intermediate');
  assert.equal(config.detector.windowMs, spec.detector.window?.ms ?? units.m);
  assert.equal(config.detector.blockMs, spec.detector.blockFor?.ms ?? 10 * units.m);
  assert.equal(config.detector.threshold, spec.threshold ?? 20);
  // the limits given, and the defaults of the others (limits added later are not this generator's business)
  const limits = { maxHeaderBytes: 16_384, maxConcurrentStreams: 100, maxUpstreamConnections: 256, ...spec.limits };
  for (const [k, v] of Object.entries(limits)) assert.equal(config.limits[k as keyof typeof config.limits], v, `limits.${k}`);
  if (typeof spec.workers === 'number') assert.equal(config.workers, spec.workers);
  else assert.ok(config.workers >= 1);
  assert.equal(config.apiKeyHeader, (spec.apiKeyHeader ?? 'authorization').toLowerCase());
  assert.equal(config.log.level, spec.logLevel ?? 'info');
  assert.equal(config.sites.length, spec.sites.length);
  config.sites.forEach((site, i) => {
    const s = spec.sites[i] as SiteSpec;
    const hosts = hostsOf(s, i).map((h) => h.toLowerCase());
    assert.deepEqual(site.hosts, hosts);
    for (const h of hosts) assert.equal(config.hosts.lookup(h), site, `${h} is served by sites[${i}]`);
    assert.equal(site.isDefault, i === spec.defaultSite);
    const maxAge = s.hsts.maxAge ?? 31_536_000;
    assert.equal(site.hsts, `max-age=${maxAge}${s.hsts.includeSubDomains ?? true ? '; includeSubDomains' : ''}${s.hsts.preload ? '; preload' : ''}`);
    assert.equal(site.certificates.length, s.kind === 'acme' ? 0 : s.rsaToo ? 2 : 1);
    assert.equal(site.identityHeader, (s.clientAuth?.forwardHeader ?? 'x-client-cert').toLowerCase());
    assert.ok(config.identityHeaders.has(site.identityHeader));
    assert.equal(site.clientAuth?.verifyDepth, s.clientAuth ? (s.clientAuth.verifyDepth ?? 4) : undefined);
    // longest prefix first, every route kept
    assert.deepEqual(site.routes.map((r) => r.path).sort(), s.routes.map((r) => r.path).sort());
    for (let k = 1; k < site.routes.length; k++) assert.ok((site.routes[k - 1] as { path: string }).path.length >= (site.routes[k] as { path: string }).path.length);
    for (const route of site.routes) {
      const r = s.routes.find((x) => x.path === route.path) as RouteSpec;
      assert.equal(route.apiKeys, r.apiKeys ?? 'off');
      assert.equal(route.segmentBoundary, !r.path.endsWith('/'));
      assert.deepEqual(route.rateLimit, r.rateLimit ? { rps: r.rateLimit.rps, burst: r.rateLimit.burst ?? Math.max(1, Math.ceil(r.rateLimit.rps)) } : null);
      assert.deepEqual(route.upstreams.map((u) => u.origin), [r.upstream].flat().map((u) => (u.startsWith('builtin:') ? u : new URL(u).origin)));
      assert.equal(route.clientCert, s.clientAuth ? (s.clientAuth.mode === 'require' ? 'required' : (r.clientCert ?? 'required')) : null);
    }
  });
}

/** Every key the schema knows, anywhere: generated "unknown" keys avoid them. */
function schemaKeys(): Set<string> {
  const keys = new Set<string>();
  const walk = (node: unknown): void => {
    if (node === null || typeof node !== 'object') return;
    const props = (node as { properties?: Record<string, unknown> }).properties;
    if (props) for (const k of Object.keys(props)) keys.add(k);
    for (const v of Object.values(node)) walk(v);
  };
  walk(configJsonSchema());
  return keys;
}

/** `['sites', 0, 'hosts']` → `sites[0].hosts`, as config issues name paths. */
const formatPath = (path: readonly (string | number)[]) => path.reduce<string>((out, k) => (typeof k === 'number' ? `${out}[${k}]` : out ? `${out}.${k}` : k), '');

/** Every place of a raw config where a value sits: objects' keys and arrays' elements. */
function placesOf(value: unknown, path: (string | number)[] = []): { path: (string | number)[]; value: unknown }[] {
  if (value === null || typeof value !== 'object') return [];
  const entries: [string | number, unknown][] = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
  return entries.flatMap(([k, v]) => [{ path: [...path, k], value: v }, ...placesOf(v, [...path, k])]);
}

function setAt(root: unknown, path: readonly (string | number)[], value: unknown, remove = false): unknown {
  const copy = structuredClone(root) as Record<string | number, unknown>;
  let node = copy;
  for (const k of path.slice(0, -1)) node = node[k] as Record<string | number, unknown>;
  const last = path.at(-1) as string | number;
  if (remove && Array.isArray(node)) node.splice(last as number, 1);
  else if (remove) delete node[last];
  else Object.defineProperty(node, last, { value, enumerable: true, writable: true, configurable: true });
  return copy;
}

const nested = (depth: number, leaf: unknown, asArray: boolean): unknown => {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = asArray ? [v] : { k: v };
  return v;
};

/** Strings that have broken config loaders: empty, huge, control characters, YAML and template syntax, look-alikes. */
const oddString = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary' }),
  fc.constantFrom('', ' ', '\u0000', '\n', 'null', '~', 'true', '0x10', '1e999', '-0', '.inf', '${HOME}', '{{x}}', '*', '&a', '!!js/function', '__proto__', 'constructor', 'hasOwnProperty', '\u202e', 'ｈｔｔｐ://x', 'http://a:b@c', 'https://[::1', '10s ', ' 10s', '10S', '10 s', '1e3s', '١٠s', '9007199254740993ms', `${'9'.repeat(400)}d`),
  fc.integer({ min: 1, max: 200_000 }).map((n) => 'x'.repeat(n)),
);

/** Values of the wrong kind, or the right kind with odd contents, or deep nesting. */
const oddValue: fc.Arbitrary<unknown> = fc.oneof(
  oddString,
  fc.constantFrom(0, -1, 1.5, Number.MAX_SAFE_INTEGER + 2, 1e308, -1e308, Infinity, -Infinity, NaN, 2 ** 31, -(2 ** 31) - 1, 65536),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.jsonValue({ maxDepth: 3 }),
  fc.tuple(fc.integer({ min: 1, max: 300 }), fc.jsonValue({ maxDepth: 1 }), fc.boolean()).map(([d, leaf, arr]) => nested(d, leaf, arr)),
);

type Mutation = { kind: 'set'; at: number; value: unknown } | { kind: 'delete'; at: number } | { kind: 'add'; at: number; key: string; value: unknown } | { kind: 'retype'; at: number; value: unknown };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: oddValue }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('add' as const), at: fc.nat(), key: oddString, value: oddValue }),
  fc.record({ kind: fc.constant('retype' as const), at: fc.nat(), value: oddValue }),
);

/** Whether `value` has another JSON type than `original` (the kind of change the schema must always notice). */
function otherType(original: unknown, value: unknown): boolean {
  const kind = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v === 'number' && !Number.isFinite(v) ? 'non-finite' : typeof v);
  return kind(original) !== kind(value);
}

/** Paths related to `path`: itself, an ancestor, or a descendant. */
const related = (issuePath: string, path: string) => issuePath === path || issuePath.startsWith(`${path}.`) || issuePath.startsWith(`${path}[`) || path.startsWith(`${issuePath}.`) || path.startsWith(`${issuePath}[`);

type Outcome = { kind: 'loaded'; config: Config } | { kind: 'invalid'; error: ConfigError } | { kind: 'yaml'; error: PortcullisError };

/**
 * A PCL_CONFIG_YAML message: a syntax error with its position, an alias
 * without anchor with its position, the alias limit (F1: these used to escape
 * as the YAML library's bare ReferenceError), or a value the library cannot build.
 */
const yamlMessage = /YAML (syntax error at (line \d+, column \d+|unknown position): .+; fix the YAML|alias \*\S+ at line \d+, column \d+ has no anchor &\S+ before it; .+|aliases expand to more than \d+ copies.+|document cannot be read \(.+\); fix the YAML)$/;

/** Loads `text`; fails on anything but a config, a ConfigError with usable issues, or PCL_CONFIG_YAML (for text that is not YAML). */
function load(text: string, ctx: ConfigContext): Outcome {
  let config: Config;
  try {
    config = parseConfigText(text, ctx.source);
  } catch (err) {
    if (err instanceof ConfigError) {
      assert.equal(err.code, 'PCL_CONFIG_INVALID');
      assert.ok(err.issues.length > 0, 'a ConfigError names at least one issue');
      for (const issue of err.issues) {
        assert.equal(typeof issue.path, 'string');
        assert.ok(typeof issue.message === 'string' && issue.message.trim().length > 0, `issue at "${issue.path}" has no message`);
      }
      assert.ok(err.message.includes(ctx.source));
      return { kind: 'invalid', error: err };
    }
    if (err instanceof PortcullisError && err.code === 'PCL_CONFIG_YAML') {
      assert.match(err.message, yamlMessage);
      assert.ok(err.message.startsWith(`${ctx.source}: `), 'the message names the file');
      return { kind: 'yaml', error: err };
    }
    throw new Error(`parseConfigText threw ${(err as Error)?.name}: ${(err as Error)?.message}`, { cause: err });
  }
  assertDeepFrozen(config);
  return { kind: 'loaded', config };
}

/** YAML-ish token soup: indentation, flow collections, anchors and aliases, tags, keys of the schema, scalars. */
const yamlToken = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('\n', '\n  ', '\n    ', '- ', ': ', ', ', '{', '}', '[', ']', '"', "'", '#', '|', '>', '---\n', '...\n', '? ', '&a ', '*a', '&b ', '*b', '<<: ', '!!str ', '!!int ', '!!map ', '!!binary ', '!tag ', '%YAML 1.1\n', '\t', ' ') },
  { weight: 2, arbitrary: fc.constantFrom('listen', 'https', 'sites', 'hosts', 'routes', 'path', 'upstream', 'certificates', 'timeouts', 'idle', 'tls', 'workers', '"127.0.0.1:8443"', '/', 'builtin:whoami', '10s', '999999999999d', 'auto', 'true', 'null', '~', '0x1F', '1e400', '-.inf', '.nan') },
  { weight: 1, arbitrary: fc.string({ maxLength: 8 }) },
);
const yamlSoup = fc.array(yamlToken, { maxLength: 80 }).map((t) => t.join(''));

export const validText = (ctx: ConfigContext) => configSpecArb.map((spec) => ({ spec, raw: rawConfig(spec, ctx) }));

export function mutated(ctx: ConfigContext, known: Set<string>) {
  return fc.tuple(validText(ctx), fc.array(mutationArb, { minLength: 1, maxLength: 3 }), fc.constantFrom('yaml' as const, 'json' as const, 'flow' as const)).map(([{ raw }, mutations, flow]) => {
    let doc: unknown = raw;
    const changes: { path: (string | number)[]; value: unknown; why: string }[] = [];
    for (const m of mutations) {
      const places = placesOf(doc);
      const place = places[m.at % places.length] as { path: (string | number)[]; value: unknown };
      if (m.kind === 'add') {
        // an unknown key in a mapping of the config (every mapping is a strict object)
        const host = place.value !== null && typeof place.value === 'object' && !Array.isArray(place.value) ? place.path : place.path.slice(0, -1);
        const target = valueAt(doc, host);
        if (Array.isArray(target) || known.has(m.key) || Object.hasOwn(target as object, m.key)) continue;
        doc = setAt(doc, [...host, m.key], m.value);
        changes.push({ path: [...host, m.key], value: m.value, why: `unknown key ${JSON.stringify(m.key)}` });
      } else if (m.kind === 'delete') {
        doc = setAt(doc, place.path, undefined, true);
      } else {
        doc = setAt(doc, place.path, m.value);
        if (m.kind === 'retype' && otherType(place.value, m.value) && !(place.path.at(-1) === 'workers' && m.value === 'auto')) changes.push({ path: place.path, value: m.value, why: `a ${typeof m.value} where ${JSON.stringify(place.value)} was` });
      }
    }
    // a later mutation may have removed or replaced an earlier one
    const expect = changes.filter((c) => isDeepStrictEqual(valueAt(doc, c.path), c.value)).map((c) => ({ path: formatPath(c.path), why: c.why }));
    return { text: render(doc, flow), expect };
  });
}

function valueAt(root: unknown, path: readonly (string | number)[]): unknown {
  let node = root;
  for (const k of path) {
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, k)) return undefined;
    node = (node as Record<string | number, unknown>)[k];
  }
  return node;
}

export const configProperties: PropertySuite<ConfigContext & { known: Set<string> }> = {
  target: 'config',
  title: 'config loader (properties)',
  async open() {
    const pki = new TestPki();
    const root = pki.root('fuzz-root');
    const ec = pki.leaf('fuzz-ec', root, { dns: ['fuzz.test', '*.fuzz.test', '*.FUZZ.test'] });
    const rsa = pki.leaf('fuzz-rsa', root, { dns: ['fuzz.test', '*.fuzz.test'], key: 'rsa' });
    const clientCa = pki.root('fuzz-client-ca');
    const dir = mkdtempSync(join(tmpdir(), 'pcl-config-fuzz-'));
    return { dir, source: join(dir, 'portcullis.yaml'), ecCert: { cert: ec.chainFile, key: ec.keyFile }, rsaCert: { cert: rsa.chainFile, key: rsa.keyFile }, clientCa: clientCa.certFile, pki, known: schemaKeys() };
  },
  async close(ctx) {
    ctx.pki.cleanup();
    rmSync(ctx.dir, { recursive: true, force: true });
  },
  cases: [
    propertyCase('a generated valid config loads, deep-frozen, with every value it was given (durations in ms, hosts in lower case, routes longest first) and the defaults for the rest', 80, (ctx) =>
      fc.property(validText(ctx), ({ spec, raw }) => {
        const outcome = load(render(raw, spec.flow), ctx);
        if (outcome.kind !== 'loaded') assert.fail(`a valid config was refused: ${outcome.error.message}`);
        checkLoaded(outcome.config, spec);
      }),
    ),
    propertyCase('a mutated valid config (odd values, wrong types, huge numbers, deep nesting, unknown keys) loads frozen or is refused with issues that name each unknown key and each wrong type', 150, (ctx) =>
      fc.asyncProperty(mutated(ctx, ctx.known), async ({ text, expect }) => {
        const outcome = await within(5000, 'loading a config', Promise.resolve().then(() => load(text, ctx)));
        if (expect.length === 0) return;
        assert.equal(outcome.kind, 'invalid', `expected issues at ${expect.map((e) => e.path).join(', ')}`);
        const issues = (outcome as { error: ConfigError }).error.issues;
        for (const e of expect) {
          assert.ok(issues.some((i) => related(i.path, e.path)), `no issue names ${e.path} (${e.why}); issues: ${issues.map((i) => `${i.path}: ${i.message}`).join(' | ')}`);
        }
      }),
    ),
    propertyCase('any YAML-like text loads or is refused with PCL_CONFIG_INVALID or PCL_CONFIG_YAML, quickly', 500, (ctx) =>
      fc.property(fc.oneof(yamlSoup, fc.string({ maxLength: 200 }), fc.string({ unit: 'binary', maxLength: 200 })), (text) => {
        const started = performance.now();
        load(text, ctx);
        assert.ok(performance.now() - started < 2000, 'loading took more than 2 s');
      }),
    ),
    propertyCase(
      'any YAML-like text, anchors, aliases and merge keys included, loads or is refused with a Portcullis error (F1: alias errors escaped as ReferenceError)',
      500,
      (ctx) => fc.property(fc.oneof(yamlSoup, fc.constantFrom('a: *x\n', `a: &a [x, x]\nb: [${'*a, '.repeat(60)}*a]\n`, '%YAML 1.1\n---\na: &a 1\nb: { <<: *a }\n')), (text) => void load(text, ctx)),
    ),
  ],
};
