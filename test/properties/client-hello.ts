import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { parseClientHello, type ClientHello, type HelloParse } from '../../src/edge/client-hello.js';
import { ja3, ja4 } from '../../src/edge/fingerprints.js';
import { encodeHandshake, encodeHello, encodeRecords, expectedHello, greaseValues, helloSpecArb, type HelloSpec } from './client-hello-encoder.js';
import { propertyCase, type PropertySuite } from './harness.js';

/** The ClientHellos of real clients (test/fixtures/client-hellos), as seeds for mutations. */
const fixtureDir = new URL('../fixtures/client-hellos/', import.meta.url);
const fixtures: readonly Buffer[] = (JSON.parse(readFileSync(new URL('index.json', fixtureDir), 'utf8')) as { file: string }[]).map((e) => readFileSync(new URL(e.file, fixtureDir)));

const kinds = new Set(['hello', 'incomplete', 'not_tls', 'malformed', 'too_large']);
const ja4Shape = /^t(13|12|11|10|s3|s2|00)[di]\d{4}[0-9A-Za-z]{2}_[0-9a-f]{12}_[0-9a-f]{12}$/;

/** One edit of a byte string: what a broken or hostile client, or a flaky network, does to a ClientHello. */
type Mutation =
  | { readonly op: 'set'; readonly at: number; readonly value: number }
  | { readonly op: 'insert'; readonly at: number; readonly bytes: Uint8Array }
  | { readonly op: 'delete'; readonly at: number; readonly count: number }
  | { readonly op: 'truncate'; readonly at: number }
  | { readonly op: 'append'; readonly bytes: Uint8Array };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('set' as const), at: fc.nat(), value: fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0, 0xff, 0x7f, 0x80, 0x16, 0x01)) }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('append' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
);

export function mutate(input: Buffer, mutations: readonly Mutation[]): Buffer {
  let b = Buffer.from(input);
  for (const m of mutations) {
    const at = b.length === 0 ? 0 : m.op === 'append' ? 0 : m.at % (b.length + 1);
    switch (m.op) {
      case 'set':
        if (b.length > 0) b[at % b.length] = m.value;
        break;
      case 'insert':
        b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
        break;
      case 'delete':
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.count)]);
        break;
      case 'truncate':
        b = b.subarray(0, at);
        break;
      case 'append':
        b = Buffer.concat([b, m.bytes]);
        break;
    }
  }
  return b;
}

/** The handshake message of a single-record ClientHello. */
const handshakeOf = (hello: Buffer) => hello.subarray(5, 5 + hello.readUInt16BE(3));

/**
 * Mutations of real and generated ClientHellos: of the raw bytes, and of the
 * handshake message re-framed in records of the right length (with the
 * handshake length fixed up or not), so that mutations reach the body parser.
 */
export const mutatedHelloArb: fc.Arbitrary<Buffer> = fc.oneof(
  fc
    .tuple(fc.oneof(fc.constantFrom(...fixtures), helloSpecArb.map(encodeHello)), fc.array(mutationArb, { minLength: 1, maxLength: 6 }))
    .map(([hello, mutations]) => mutate(hello, mutations)),
  fc
    .tuple(fc.oneof(fc.constantFrom(...fixtures).map(handshakeOf), helloSpecArb.map(encodeHandshake)), fc.array(mutationArb, { minLength: 1, maxLength: 4 }), fc.boolean(), fc.array(fc.nat(), { maxLength: 3 }))
    .map(([message, mutations, fixLength, cuts]) => {
      const m = mutate(message, mutations);
      if (fixLength && m.length >= 4) m.writeUIntBE(m.length - 4, 1, 3);
      return m.length === 0 ? m : encodeRecords(m, cuts.map((c) => c % m.length), 0x0301);
    }),
);

/** Text that starts like HTTP or like nothing; upper-case letters reach the parser's "wait for 8 bytes" branch. */
const textArb = fc.string({ unit: fc.constantFrom(...'GETPOSTHEADPRICONNECTX /\r\n\0é'.split('')), maxLength: 12 }).map((s) => Buffer.from(s, 'latin1'));

/** Anything a client may send first: random bytes, bytes that start like a TLS record, text, broken ClientHellos. */
export const firstFlightArb: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b)),
  fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 0xffff }), fc.uint8Array({ maxLength: 400 })).map(([v, len, rest]) => Buffer.concat([Buffer.from([0x16, 0x03, v, len >> 8, len & 0xff]), rest])),
  fc.tuple(fc.uint8Array({ maxLength: 300 })).map(([body]) => Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0, body.length + 4, 1, 0, 0, body.length]), body])),
  textArb,
  mutatedHelloArb,
);

function checkClassified(r: HelloParse, input: Buffer): void {
  assert.ok(kinds.has(r.kind), `unknown kind ${r.kind}`);
  if (r.kind === 'incomplete') assert.ok(Number.isInteger(r.need) && r.need > input.length, `need ${r.need} after ${input.length} bytes`);
  if (r.kind === 'not_tls') assert.notEqual(input[0], 0x16, 'a handshake record type byte is never "not TLS"');
  if (r.kind === 'malformed') assert.ok(r.why.length > 0);
  if (r.kind === 'hello') {
    assert.match(ja4(r.hello), ja4Shape);
    assert.match(ja3(r.hello).hash, /^[0-9a-f]{32}$/);
    assert.ok(r.hello.cipherSuites.length > 0);
    if (r.hello.serverName !== null) assert.match(r.hello.serverName, /^[a-z0-9._-]{0,253}$/);
  }
}

/**
 * Checks every prefix of `input` against the answer for the whole: a prefix
 * answers "incomplete" or exactly the final answer, and an "incomplete" never
 * asks for more bytes than the next decision needs (every prefix shorter than
 * `need` is still incomplete).
 */
function checkPrefixes(input: Buffer): void {
  const final = parseClientHello(input);
  // every prefix of short inputs; of long ones about 300 evenly spaced (a violation may then go unseen, never a false one)
  const lengths = new Set<number>();
  if (input.length <= 700) for (let k = 0; k <= input.length; k++) lengths.add(k);
  else for (let k = 0; k <= input.length; k += Math.ceil(input.length / 300)) lengths.add(k);
  lengths.add(input.length);
  const sorted = [...lengths].sort((a, b) => a - b);
  const results = new Map(sorted.map((k) => [k, parseClientHello(input.subarray(0, k))]));
  const firstDecision = sorted.find((k) => (results.get(k) as HelloParse).kind !== 'incomplete');
  for (const k of sorted) {
    const r = results.get(k) as HelloParse;
    checkClassified(r, input.subarray(0, k));
    if (r.kind !== 'incomplete') {
      assert.deepEqual(r, final, `a prefix of ${k} bytes answered differently from the whole ${input.length} bytes`);
      continue;
    }
    if (firstDecision !== undefined && k < firstDecision) {
      assert.ok(r.need <= firstDecision, `after ${k} bytes the parser asks for ${r.need}, but ${firstDecision} bytes already decide (${(results.get(firstDecision) as HelloParse).kind})`);
    }
  }
}

/** Feeds `stream` in `segments` as HelloPeek does (parsing again once `need` bytes are there) and returns every answer. */
function feed(stream: Buffer, cuts: readonly number[]): { at: number; result: HelloParse }[] {
  const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
  const answers: { at: number; result: HelloParse }[] = [];
  let need = 1;
  for (const at of [...points, stream.length]) {
    if (at < need) continue;
    const result = parseClientHello(stream.subarray(0, at));
    answers.push({ at, result });
    if (result.kind !== 'incomplete') break;
    need = result.need;
  }
  return answers;
}

/** `spec` with GREASE values inserted at `positions` of each list the fingerprints read. */
function withGrease(spec: HelloSpec, picks: readonly number[]): HelloSpec {
  let i = 0;
  const sprinkle = (list: readonly number[]) => {
    const out = [...list];
    for (let n = (picks[i++ % picks.length] ?? 0) % 3; n > 0; n--) out.splice((picks[i++ % picks.length] ?? 0) % (out.length + 1), 0, greaseValues[(picks[i++ % picks.length] ?? 0) % 16] as number);
    return out;
  };
  const extensions = spec.extensions?.map((e) => {
    if ('versions' in e) return { ...e, versions: sprinkle(e.versions).slice(0, 127) };
    if ('groups' in e) return { ...e, groups: sprinkle(e.groups) };
    if ('algorithms' in e) return { ...e, algorithms: sprinkle(e.algorithms) };
    return e;
  });
  // a GREASE extension with an empty body, as browsers send it
  const greaseExt = { type: greaseValues[(picks[0] ?? 0) % 16] as number, data: new Uint8Array() };
  const types = new Set(extensions?.map((e) => e.type));
  return { ...spec, cipherSuites: sprinkle(spec.cipherSuites), extensions: extensions && !types.has(greaseExt.type) ? [...extensions, greaseExt] : extensions ?? null };
}

const helloOf = (bytes: Buffer): ClientHello => {
  const r = parseClientHello(bytes);
  assert.equal(r.kind, 'hello', JSON.stringify(r));
  return (r as { hello: ClientHello }).hello;
};

export const clientHelloProperties: PropertySuite<void> = {
  target: 'client-hello',
  title: 'ClientHello parser and fingerprints (properties)',
  open: async () => {},
  close: async () => {},
  cases: [
    propertyCase('any first flight of bytes is classified as one of the kinds without throwing, and whatever parses is fingerprinted', 1000, () =>
      fc.property(firstFlightArb, (input) => checkClassified(parseClientHello(input), input)),
    ),
    propertyCase('a generated ClientHello in one record parses into exactly the generated fields', 500, () =>
      fc.property(helloSpecArb, (spec) => assert.deepEqual(helloOf(encodeHello(spec)), expectedHello(spec))),
    ),
    propertyCase(
      'a generated ClientHello split across records and TCP segments, with bytes after it, parses the same once complete and is incomplete before',
      400,
      () =>
        fc.property(
          helloSpecArb,
          fc.array(fc.nat(), { maxLength: 12 }),
          fc.array(fc.nat(), { maxLength: 12 }),
          fc.uint8Array({ maxLength: 40 }),
          fc.integer({ min: 0x0300, max: 0x03ff }),
          (spec, recordCuts, segmentCuts, trailer, laterVersion) => {
            const message = encodeHandshake(spec);
            const records = encodeRecords(message, recordCuts.map((c) => c % message.length), spec.recordVersion, laterVersion);
            const answers = feed(Buffer.concat([records, trailer]), segmentCuts);
            const last = answers.at(-1) as { at: number; result: HelloParse };
            for (const { at, result } of answers.slice(0, -1)) {
              assert.equal(result.kind, 'incomplete', `after ${at} of ${records.length} bytes`);
              assert.ok((result as { need: number }).need <= records.length, `asks for ${(result as { need: number }).need} bytes of a ${records.length}-byte ClientHello`);
            }
            assert.ok(last.at >= records.length, 'answered before the ClientHello was complete');
            assert.deepEqual(last.result, { kind: 'hello', hello: expectedHello(spec) });
          },
        ),
    ),
    propertyCase('every prefix of any input answers incomplete or the final answer, and need never exceeds the bytes the next decision takes (TLS records)', 400, () =>
      fc.property(fc.oneof(firstFlightArb.filter((b) => b[0] === 0x16), helloSpecArb.map(encodeHello)), (input) => checkPrefixes(input)),
    ),
    propertyCase(
      'every prefix of any input answers incomplete or the final answer, and need never exceeds the bytes the next decision takes (all inputs)',
      600,
      () => fc.property(firstFlightArb, (input) => checkPrefixes(input)),
    ),
    propertyCase(
      'need never exceeds the bytes the next decision takes, also for short upper-case text (F2: "GE" asked for 8 bytes, though "GE\\0" decides at 3)',
      300,
      () => fc.property(textArb, (input) => checkPrefixes(input)),
    ),
    propertyCase('JA4 and JA3 ignore GREASE values wherever a client puts them', 400, () =>
      fc.property(helloSpecArb, fc.array(fc.nat(), { minLength: 1, maxLength: 24 }), (spec, picks) => {
        const plain = expectedHello(spec);
        const greased = helloOf(encodeHello(withGrease(spec, picks)));
        assert.equal(ja4(greased), ja4(plain));
        assert.equal(ja3(greased).text, ja3(plain).text);
      }),
    ),
    propertyCase('JA4 does not depend on the order of cipher suites or extensions, and its first part counts what was offered', 400, () =>
      fc.property(helloSpecArb, fc.nat(), (spec, shift) => {
        const rotate = <T>(list: readonly T[]) => list.map((_, i) => list[(i + shift) % list.length] as T);
        const hello = expectedHello(spec);
        const reordered = helloOf(encodeHello({ ...spec, cipherSuites: rotate(spec.cipherSuites), extensions: spec.extensions && rotate(spec.extensions) }));
        const fingerprint = ja4(hello);
        assert.equal(ja4(reordered), fingerprint);
        const isGrease = (v: number) => greaseValues.includes(v);
        const versions = hello.supportedVersions.filter((v) => !isGrease(v));
        const version = versions.length ? Math.max(...versions) : hello.legacyVersion;
        const versionCode = ({ 0x0304: '13', 0x0303: '12', 0x0302: '11', 0x0301: '10', 0x0300: 's3', 0x0002: 's2' } as Record<number, string>)[version] ?? '00';
        const count = (n: number) => String(Math.min(n, 99)).padStart(2, '0');
        const counts = `${count(hello.cipherSuites.filter((c) => !isGrease(c)).length)}${count(hello.extensions.filter((e) => !isGrease(e)).length)}`;
        assert.equal(fingerprint.slice(0, 8), `t${versionCode}${hello.serverName === null ? 'i' : 'd'}${counts}`);
      }),
    ),
  ],
};
