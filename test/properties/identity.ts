import assert from 'node:assert/strict';
import { X509Certificate, createHash, webcrypto } from 'node:crypto';
import fc from 'fast-check';
import { x509 } from '../../src/pki/x509.js';
import { compileAllowList, identityOf, normaliseFingerprint, parseSubjectPattern, type ClientIdentity, type RawAllowList } from '../../src/trust/index.js';
import { propertyCase, type PropertySuite } from './harness.js';

/**
 * Identity matching properties: allow-lists against a reference model
 * written here, over identities built to sit just inside and just outside
 * each pattern; and identities read from generated certificates.
 */

// ---- the reference model ------------------------------------------------

/** A URI with a "." or ".." path segment, which could climb out of a prefix once normalised. */
const hasDotSegment = (uri: string) => {
  const path = uri.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/]*/i, '');
  return path.split(/[/?#]/).some((s) => s === '.' || s === '..');
};

/**
 * A URI no pattern admits: dot segments, or an encoded ".", "/" or "\\" in
 * any case (F4: "%2e%2e" is ".." to whoever decodes, RFC 3986 §2.3), or a backslash.
 */
const refusedUri = (uri: string) => hasDotSegment(uri) || /%2e|%2f|%5c|\\/i.test(uri);

function modelUri(pattern: string, uri: string): boolean {
  if (refusedUri(uri)) return false;
  if (!pattern.endsWith('/*')) return uri === pattern;
  // a prefix over whole segments: the base, a slash, then anything
  const base = pattern.slice(0, -2);
  return uri.length > base.length && uri.slice(0, base.length) === base && uri[base.length] === '/';
}

function modelDns(pattern: string, name: string): boolean {
  if (name.includes('*')) return false;
  const p = pattern.toLowerCase();
  if (!p.startsWith('*.')) return name === p;
  const labels = name.split('.');
  return labels.length >= 2 && labels[0] !== '' && labels.slice(1).join('.') === p.slice(2);
}

function modelSubject(pattern: readonly [string, string][], attributes: ReadonlyMap<string, readonly string[]>): boolean {
  return pattern.every(([type, value]) => (attributes.get(type.toUpperCase()) ?? []).includes(value));
}

const hexOf = (fingerprint: string) => fingerprint.trim().replace(/^sha256:/i, '').replace(/:/g, '').toUpperCase();

/** Accepted fingerprint spellings: "sha256:" in any case, then 64 hex digits in any case, colons anywhere. */
const modelFingerprintSpelling = (text: string) => /^sha256:[0-9a-f:]+$/i.test(text.trim()) && /^[0-9A-F]{64}$/.test(hexOf(text));

interface AllowSpec {
  readonly uri: readonly string[];
  readonly dns: readonly string[];
  /** Pattern pairs, and how they were written. */
  readonly subject: readonly { pairs: [string, string][]; text: string }[];
  readonly fingerprints: readonly string[];
}

function model(allow: AllowSpec, id: ClientIdentity): boolean {
  return (
    id.uris.some((u) => allow.uri.some((p) => modelUri(p, u))) ||
    id.dnsNames.some((n) => allow.dns.some((p) => modelDns(p, n))) ||
    allow.subject.some((s) => modelSubject(s.pairs, id.subjectAttributes)) ||
    allow.fingerprints.some((f) => hexOf(f) === hexOf(id.fingerprint))
  );
}

// ---- generators ----------------------------------------------------------

const segment = fc.oneof(fc.stringMatching(/^[a-z0-9_-]{1,8}$/), fc.constantFrom('billing', 'billingx', 'bill', 'admin', 'x'));
const trustDomain = fc.constantFrom('example.test', 'example.test.evil', 'Example.test', 'other.test');
const scheme = fc.constantFrom('spiffe', 'SPIFFE', 'https', 'urn');

/** URI allow-list patterns as the schema admits them: exact, or "…/*". */
const uriPattern = fc.tuple(scheme, trustDomain, fc.array(segment, { maxLength: 3 }), fc.boolean()).map(([s, d, segs, wildcard]) => {
  const base = `${s}://${d}${segs.map((x) => `/${x}`).join('')}`;
  return wildcard ? `${base}/*` : base;
});

/** A URI near `pattern`: the pattern itself, below it, beside it, with dot segments, doubled slashes, other case, query or fragment. */
const uriNear = (pattern: string) => {
  const base = pattern.endsWith('/*') ? pattern.slice(0, -2) : pattern;
  return fc.oneof(
    fc.constant(base),
    fc.constant(`${base}/`),
    segment.map((x) => `${base}/${x}`),
    fc.tuple(segment, segment).map(([a, b]) => `${base}/${a}/${b}`),
    segment.map((x) => `${base}${x}`),
    fc.constantFrom('..', '.').chain((dots) => fc.oneof(fc.constant(`${base}/${dots}`), segment.map((x) => `${base}/${dots}/${x}`), segment.map((x) => `${base}/${x}/${dots}/${dots}/admin`))),
    segment.map((x) => `${base}//${x}`),
    fc.constant(base.toUpperCase()),
    fc.constantFrom('?a=1', '#frag', '%2F', '%2f', '%5C', '\\', '%20', '%41', '*').map((t) => `${base}/${t}`),
    fc.tuple(fc.constantFrom('%2e%2e', '%2E%2E', '.%2e', '%2E.', '%2e', 'v1%2e2'), segment).map(([dots, x]) => `${base}/${dots}/${x}`),
    fc.constant(base.slice(0, -1)),
  );
};

const label = fc.oneof(fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?$/), fc.constantFrom('clients', 'a', 'b'));
const dnsPattern = fc.tuple(fc.array(label, { minLength: 1, maxLength: 3 }), fc.boolean()).map(([labels, wildcard]) => `${wildcard ? '*.' : ''}${labels.join('.')}.test`);
/** A DNS SAN near `pattern`: one label below a wildcard, two below, the parent itself, a wildcard SAN, a look-alike suffix. */
const dnsNear = (pattern: string) => {
  const parent = pattern.replace(/^\*\./, '');
  return fc.oneof(
    fc.constant(parent),
    label.map((l) => `${l}.${parent}`),
    fc.tuple(label, label).map(([a, b]) => `${a}.${b}.${parent}`),
    fc.constant(`*.${parent}`),
    label.map((l) => `${l}${parent}`),
    label.map((l) => `${l}-${parent}`),
    fc.constant(`.${parent}`),
    fc.constant(`${parent}.`),
  );
};

const attributeType = fc.constantFrom('CN', 'O', 'OU', 'C', 'L');
/** Attribute values with the characters that need escaping in RFC 4514 (no surrounding spaces: the pattern syntax trims them). */
const attributeValue = fc
  .string({ unit: fc.constantFrom(...'abcXYZ019 ,=+\\"<>;#-'.split('')), minLength: 1, maxLength: 12 })
  .filter((v) => v.trim() === v && v.length > 0);
const escapeValue = (v: string) => v.replace(/[\\,]/g, (c) => `\\${c}`);
const subjectPattern = fc.array(fc.tuple(attributeType, attributeValue), { minLength: 1, maxLength: 3 }).chain((pairs) =>
  fc.tuple(fc.constant(pairs), fc.array(fc.boolean(), { minLength: pairs.length, maxLength: pairs.length }), fc.boolean()).map(([p, lower, spaced]) => ({
    pairs: p,
    // types in any case, optional spaces after commas and around "="
    text: p.map(([t, v], i) => `${lower[i] ? t.toLowerCase() : t}${spaced ? ' = ' : '='}${escapeValue(v)}`).join(spaced ? ', ' : ','),
  })),
);

const digestHex = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('hex').toUpperCase());
const canonicalFingerprint = (hex: string) => `sha256:${hex.match(/../g)!.join(':')}`;
/** The spellings an operator may paste: openssl's, lower case, no colons, odd colons, padded, wrong prefix, wrong length. */
const fingerprintSpelling = (hex: string) =>
  fc.oneof(
    fc.constant(canonicalFingerprint(hex)),
    fc.constant(`sha256:${hex.toLowerCase()}`),
    fc.constant(`SHA256:${hex.match(/../g)!.join(':').toLowerCase()}`),
    fc.constant(`Sha256:${hex}`),
    fc.constant(`  sha256:${hex}\t`),
    fc.constant(`sha256::${hex}:`),
    fc.constant(`sha256:${hex.slice(0, 62)}`),
    fc.constant(`sha1:${hex}`),
    fc.constant(`sha256: ${hex}`),
    fc.constant(hex),
    fc.constant(`sha256:${hex}0`),
    fc.constant(`sha256:${hex.slice(0, 63)}G`),
  );

interface MatchCase {
  readonly allow: AllowSpec;
  readonly identity: ClientIdentity;
}

const emptyIdentity = (fingerprint: string): ClientIdentity => ({
  subject: '',
  issuer: '',
  subjectAttributes: new Map(),
  serial: '01',
  fingerprint,
  spkiPin: '',
  uris: [],
  dnsNames: [],
  emails: [],
  notAfter: '',
});

const matchCase: fc.Arbitrary<MatchCase> = fc
  .record({
    uri: fc.array(uriPattern, { maxLength: 3 }),
    dns: fc.array(dnsPattern, { maxLength: 3 }),
    subject: fc.array(subjectPattern, { maxLength: 2 }),
    fingerprintHex: fc.array(digestHex, { maxLength: 2 }),
  })
  .chain((a) =>
    fc
      .record({
        uris: fc.array(a.uri.length ? fc.oneof(fc.constantFrom(...a.uri).chain(uriNear), uriPattern.chain(uriNear)) : uriPattern.chain(uriNear), { maxLength: 3 }),
        dnsNames: fc.array(a.dns.length ? fc.oneof(fc.constantFrom(...a.dns).chain(dnsNear), dnsPattern.chain(dnsNear)) : dnsPattern.chain(dnsNear), { maxLength: 3 }),
        // the certificate's subject: a pattern's pairs with some dropped or changed, plus other attributes
        attributes: fc.tuple(fc.array(fc.tuple(attributeType, attributeValue), { maxLength: 3 }), fc.array(fc.nat(), { maxLength: 4 })),
        ownHex: fc.oneof(digestHex, a.fingerprintHex.length ? fc.constantFrom(...a.fingerprintHex) : digestHex),
        spellings: fc.tuple(...a.fingerprintHex.map(fingerprintSpelling)),
      })
      .map(({ uris, dnsNames, attributes: [extra, picks], ownHex, spellings }) => {
        const attributes = new Map<string, string[]>();
        const add = (t: string, v: string) => attributes.set(t, [...(attributes.get(t) ?? []), v]);
        a.subject.forEach((s, i) => s.pairs.forEach(([t, v], j) => (picks[(i + j) % Math.max(1, picks.length)] ?? 0) % 4 !== 0 && add(t, (picks[j] ?? 0) % 7 === 1 ? `${v}x` : v)));
        for (const [t, v] of extra) add(t, v);
        const allow: AllowSpec = { uri: a.uri, dns: a.dns, subject: a.subject, fingerprints: spellings.filter(modelFingerprintSpelling) };
        return { allow, identity: { ...emptyIdentity(canonicalFingerprint(ownHex)), uris, dnsNames: dnsNames.map((n) => n.toLowerCase()), subjectAttributes: attributes } };
      }),
  );

const rawOf = (allow: AllowSpec): RawAllowList => ({ uri: allow.uri, dns: allow.dns, subject: allow.subject.map((s) => s.text), fingerprints: allow.fingerprints });

// ---- identities read from certificates --------------------------------------

interface IdentityContext {
  readonly keys: webcrypto.CryptoKeyPair;
}

/** SAN values with the characters Node quotes in subjectAltName (CVE-2021-44532): commas, quotes, colons, backslashes, spaces. */
const sanText = (extra: string) => fc.string({ unit: fc.constantFrom(...`abcXYZ019-._~/${extra}`.split('')), minLength: 1, maxLength: 24 });
const sanUri = fc.tuple(fc.constantFrom('spiffe://example.test/', 'https://a.test/', 'urn:x:'), sanText(':,"\\ =%@?#\n\t\u0001\u007f')).map(([p, s]) => `${p}${s}`);
const sanDns = fc.tuple(fc.array(fc.stringMatching(/^[A-Za-z0-9]([A-Za-z0-9-]{0,6}[A-Za-z0-9])?$/), { minLength: 1, maxLength: 3 }), fc.boolean()).map(([l, w]) => `${w ? '*.' : ''}${l.join('.')}.test`);
const sanEmail = fc.tuple(sanText('+'), fc.constantFrom('example.test', 'a.test')).map(([u, d]) => `${u}@${d}`);
/** Subject values with RFC 4514 specials: commas, "=", "+", quotes, backslashes, "#", spaces at either end. */
const subjectValue = fc.string({ unit: fc.constantFrom(...'abcXYZ019 ,=+\\"<>;#-é'.split('')), minLength: 1, maxLength: 16 });

interface CertSpec {
  readonly uris: readonly string[];
  readonly dns: readonly string[];
  readonly emails: readonly string[];
  readonly subject: readonly [string, string][];
}

const certSpec: fc.Arbitrary<CertSpec> = fc.record({
  uris: fc.array(sanUri, { maxLength: 3 }),
  dns: fc.array(sanDns, { maxLength: 3 }),
  emails: fc.array(sanEmail, { maxLength: 2 }),
  subject: fc.array(fc.tuple(fc.constantFrom('CN', 'O', 'OU'), subjectValue), { minLength: 1, maxLength: 3 }),
});

async function certificateOf(spec: CertSpec, keys: webcrypto.CryptoKeyPair): Promise<X509Certificate> {
  const names = [...spec.dns.map((value) => ({ type: 'dns' as const, value })), ...spec.uris.map((value) => ({ type: 'url' as const, value })), ...spec.emails.map((value) => ({ type: 'email' as const, value }))];
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    // values as typed strings: a plain string would be read as RFC 4514 text ("#…" as hex DER, quotes and escapes undone)
    name: new x509.Name(spec.subject.map(([t, v]) => ({ [t]: [{ utf8String: v }] })) as unknown as x509.JsonName),
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    keys: keys as never,
    extensions: names.length ? [new x509.SubjectAlternativeNameExtension(names)] : [],
  });
  return new X509Certificate(Buffer.from(cert.rawData));
}

/** Subject values with control characters, which Node prints as RFC 4514 hex escapes ("\\0A"). */
const controlSubjectValue = fc.string({ unit: fc.constantFrom(...'abc \n\t\u0001\u001f\u007f'.split('')), minLength: 1, maxLength: 8 }).filter((v) => [...v].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f));

/** URIs that climb out of a prefix once percent-decoded ("%2e%2e" is ".." by RFC 3986 §2.3 and §6.2.2.2). */
const encodedDots = fc.tuple(fc.constantFrom('%2e%2e', '%2E%2E', '.%2e', '%2e.', '%2e'), segment).map(([dots, x]) => [`spiffe://example.test/billing/${dots}/${x}`, dots] as const);

export const identityProperties: PropertySuite<IdentityContext> = {
  target: 'identity',
  title: 'identity matching (properties)',
  open: async () => ({ keys: (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify'])) as webcrypto.CryptoKeyPair }),
  close: async () => {},
  cases: [
    propertyCase('an allow-list admits an identity exactly when the reference model does (URI prefixes over whole segments, no dot segments, literal or encoded; DNS wildcards over one label; subjects; fingerprints in any accepted spelling)', 1000, () =>
      fc.property(matchCase, ({ allow, identity }) => {
        assert.equal(compileAllowList(rawOf(allow)).matches(identity), model(allow, identity));
      }),
    ),
    propertyCase('a URI prefix pattern admits the base followed by "/" and anything without dot segments (literal or encoded) or encoded slashes, and never a sibling such as ".../billingx"', 1000, () =>
      fc.property(uriPattern.filter((p) => p.endsWith('/*')).chain((p) => fc.tuple(fc.constant(p), uriNear(p))), ([pattern, uri]) => {
        const admitted = compileAllowList({ uri: [pattern] }).matches({ ...emptyIdentity('sha256:00'), uris: [uri] });
        assert.equal(admitted, modelUri(pattern, uri), `${pattern} vs ${uri}`);
        if (admitted) assert.ok(uri.startsWith(pattern.slice(0, -1)) && !refusedUri(uri));
      }),
    ),
    propertyCase('a fingerprint is accepted in every spelling the model accepts, always normalised to openssl\'s form, and refused otherwise', 1000, () =>
      fc.property(digestHex.chain((hex) => fc.tuple(fc.constant(hex), fingerprintSpelling(hex))), ([hex, spelling]) => {
        const normal = normaliseFingerprint(spelling);
        assert.equal(normal, modelFingerprintSpelling(spelling) ? canonicalFingerprint(hex) : null, spelling);
      }),
    ),
    propertyCase('a subject pattern written with escapes, any case of types and spaces parses back into its pairs', 1000, () =>
      fc.property(subjectPattern, ({ pairs, text }) => {
        assert.deepEqual(parseSubjectPattern(text), pairs.map(([t, v]) => [t.toUpperCase(), v]));
      }),
    ),
    propertyCase('the identity read from a certificate has its URI, DNS and email SANs (DNS in lower case), its subject attributes and its SHA-256 fingerprint', 150, (ctx) =>
      fc.asyncProperty(certSpec, async (spec) => {
        const cert = await certificateOf(spec, ctx.keys);
        const id = identityOf(cert);
        assert.deepEqual(id.uris, spec.uris);
        assert.deepEqual(id.dnsNames, spec.dns.map((d) => d.toLowerCase()));
        assert.deepEqual(id.emails, spec.emails);
        assert.equal(id.fingerprint, canonicalFingerprint(createHash('sha256').update(cert.raw).digest('hex').toUpperCase()));
        const expected = new Map<string, string[]>();
        for (const [t, v] of spec.subject) expected.set(t, [...(expected.get(t) ?? []), v]);
        assert.deepEqual(new Map([...id.subjectAttributes].filter(([t]) => expected.has(t))), expected);
        // and an allow-list naming exactly these values admits it
        assert.ok(compileAllowList({ fingerprints: [`sha256:${hexOf(id.fingerprint).toLowerCase()}`] }).matches(id));
      }),
    ),
    propertyCase(
      'subject values with control characters are read back as they are, and a subject pattern in RFC 4514 escapes admits them (F6: Node prints them as RFC 4514 hex escapes, once read as "0A")',
      50,
      (ctx) =>
        fc.asyncProperty(controlSubjectValue, async (value) => {
          const id = identityOf(await certificateOf({ uris: [], dns: [], emails: [], subject: [['CN', value]] }, ctx.keys));
          assert.deepEqual(id.subjectAttributes.get('CN'), [value]);
          // the subject as the logs and the identity header print it, as an allow-list entry
          assert.ok(compileAllowList({ subject: [id.subject] }).matches(id), id.subject);
        }),
    ),
    propertyCase(
      'a URI with percent-encoded dot segments never matches a prefix pattern (F4: "billing/%2e%2e/admin" was admitted by "billing/*")',
      50,
      () =>
        fc.property(encodedDots, ([uri]) => {
          assert.equal(compileAllowList({ uri: ['spiffe://example.test/billing/*'] }).matches({ ...emptyIdentity('sha256:00'), uris: [uri] }), false, uri);
        }),
    ),
  ],
};
