import fc from 'fast-check';
import type { ClientHello } from '../../src/edge/client-hello.js';

/**
 * A test-side ClientHello encoder (RFC 8446 §4.1.2 wire format) and
 * generators of well-formed ClientHellos, written independently of the
 * parser so a round trip checks one against the other.
 */

export type ExtensionSpec =
  /** server_name: the first host_name entry is the one the parser reads; later entries are skipped. */
  | { readonly type: 0; readonly names: readonly { readonly nameType: number; readonly name: Uint8Array }[] }
  | { readonly type: 16; readonly protocols: readonly Uint8Array[] }
  | { readonly type: 43; readonly versions: readonly number[] }
  | { readonly type: 10; readonly groups: readonly number[] }
  | { readonly type: 11; readonly formats: readonly number[] }
  | { readonly type: 13; readonly algorithms: readonly number[] }
  | { readonly type: 51; readonly shares: readonly { readonly group: number; readonly key: Uint8Array }[] }
  | { readonly type: number; readonly data: Uint8Array };

export interface HelloSpec {
  readonly recordVersion: number;
  readonly legacyVersion: number;
  readonly random: Uint8Array;
  readonly sessionId: Uint8Array;
  readonly cipherSuites: readonly number[];
  readonly compression: Uint8Array;
  /** null: no extensions block at all (pre-TLS 1.2 clients). */
  readonly extensions: readonly ExtensionSpec[] | null;
}

const u8 = (n: number) => Buffer.from([n & 0xff]);
const u16 = (n: number) => Buffer.from([(n >> 8) & 0xff, n & 0xff]);
const u24 = (n: number) => Buffer.from([(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
const vec8 = (body: Uint8Array) => Buffer.concat([u8(body.length), body]);
const vec16 = (body: Uint8Array) => Buffer.concat([u16(body.length), body]);
const u16s = (values: readonly number[]) => Buffer.concat(values.map(u16));

function extensionBody(ext: ExtensionSpec): Buffer {
  if ('names' in ext) return vec16(Buffer.concat(ext.names.map((n) => Buffer.concat([u8(n.nameType), vec16(n.name)]))));
  if ('protocols' in ext) return vec16(Buffer.concat(ext.protocols.map(vec8)));
  if ('versions' in ext) return vec8(u16s(ext.versions));
  if ('groups' in ext) return vec16(u16s(ext.groups));
  if ('formats' in ext) return vec8(Buffer.from(ext.formats));
  if ('algorithms' in ext) return vec16(u16s(ext.algorithms));
  if ('shares' in ext) return vec16(Buffer.concat(ext.shares.map((k) => Buffer.concat([u16(k.group), vec16(k.key)]))));
  return Buffer.from(ext.data);
}

/** The handshake message: type 1, 24-bit length, body. */
export function encodeHandshake(spec: HelloSpec): Buffer {
  const parts = [u16(spec.legacyVersion), Buffer.from(spec.random), vec8(spec.sessionId), vec16(u16s(spec.cipherSuites)), vec8(spec.compression)];
  if (spec.extensions) parts.push(vec16(Buffer.concat(spec.extensions.map((e) => Buffer.concat([u16(e.type), vec16(extensionBody(e))])))));
  const body = Buffer.concat(parts);
  return Buffer.concat([u8(1), u24(body.length), body]);
}

/** TLS records of type handshake carrying `message`, cut before each offset of `cuts`; the first record has `recordVersion`, the others `laterVersion`. */
export function encodeRecords(message: Buffer, cuts: readonly number[], recordVersion: number, laterVersion = 0x0303): Buffer {
  const points = [...new Set(cuts.filter((c) => c > 0 && c < message.length))].sort((a, b) => a - b);
  const bounds = [0, ...points, message.length];
  const records: Buffer[] = [];
  for (let i = 0; i + 1 < bounds.length; i++) {
    const part = message.subarray(bounds[i], bounds[i + 1]);
    records.push(Buffer.concat([u8(22), u16(i === 0 ? recordVersion : laterVersion), u16(part.length), part]));
  }
  return Buffer.concat(records);
}

/** A single-record ClientHello. */
export const encodeHello = (spec: HelloSpec): Buffer => encodeRecords(encodeHandshake(spec), [], spec.recordVersion);

/** What the parser must read from a spec. */
export function expectedHello(spec: HelloSpec): ClientHello {
  const exts = spec.extensions ?? [];
  const of = <K extends string>(key: K): number[] => exts.flatMap((e) => (key in e ? [...(e as unknown as Record<K, readonly number[]>)[key]] : []));
  const sni = exts.find((e): e is Extract<ExtensionSpec, { names: unknown }> => 'names' in e);
  const hostName = sni?.names.find((n) => n.nameType === 0);
  return {
    recordVersion: spec.recordVersion,
    legacyVersion: spec.legacyVersion,
    supportedVersions: of('versions'),
    cipherSuites: [...spec.cipherSuites],
    extensions: exts.map((e) => e.type),
    serverName: hostName ? Buffer.from(hostName.name).toString('latin1').toLowerCase().replace(/\.$/, '') : null,
    alpn: exts.flatMap((e) => ('protocols' in e ? e.protocols.map((p) => Buffer.from(p).toString('latin1')) : [])),
    groups: of('groups'),
    keyShares: exts.flatMap((e) => ('shares' in e ? e.shares.map((k) => k.group) : [])),
    signatureAlgorithms: of('algorithms'),
    ecPointFormats: of('formats'),
  };
}

/** GREASE values (RFC 8701): 0x0a0a, 0x1a1a … 0xfafa. */
export const greaseValues = Array.from({ length: 16 }, (_, i) => ((i << 4) | 0x0a) * 0x0101);

const u16Value = fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.constantFrom(...greaseValues, 0x0301, 0x0302, 0x0303, 0x0304, 0x1301, 0x1302, 0xc02b, 0x001d, 0x0017, 0x0403, 0x0804));
const bytes = (maxLength: number, minLength = 0) => fc.uint8Array({ minLength, maxLength });

/** Host names as RFC 6066 allows them (LDH labels), in any case, sometimes with a trailing dot. */
export const hostNameArb = fc
  .tuple(fc.array(fc.stringMatching(/^[A-Za-z0-9]([A-Za-z0-9_-]{0,20}[A-Za-z0-9])?$/), { minLength: 1, maxLength: 5 }), fc.boolean())
  .map(([labels, dot]) => `${labels.join('.')}${dot ? '.' : ''}`)
  .filter((n) => n.length <= 253 && n !== '.');

const knownTypes = new Set([0, 10, 11, 13, 16, 43, 51]);

const extensionArb: fc.Arbitrary<ExtensionSpec> = fc.oneof(
  fc
    .tuple(
      hostNameArb,
      fc.array(fc.record({ nameType: fc.integer({ min: 0, max: 255 }), name: bytes(40) }), { maxLength: 2 }),
      fc.array(fc.record({ nameType: fc.integer({ min: 1, max: 255 }), name: bytes(40) }), { maxLength: 2 }),
    )
    // entries of other name types may come first; the first host_name entry is read, any after it skipped
    .map(([host, after, before]) => ({ type: 0 as const, names: [...before, { nameType: 0, name: Buffer.from(host, 'latin1') }, ...after] })),
  fc.array(bytes(255, 1), { maxLength: 6 }).map((protocols) => ({ type: 16 as const, protocols })),
  fc.array(u16Value, { maxLength: 127 }).map((versions) => ({ type: 43 as const, versions })),
  fc.array(u16Value, { maxLength: 40 }).map((groups) => ({ type: 10 as const, groups })),
  fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 8 }).map((formats) => ({ type: 11 as const, formats })),
  fc.array(u16Value, { maxLength: 40 }).map((algorithms) => ({ type: 13 as const, algorithms })),
  fc.array(fc.record({ group: u16Value, key: bytes(1200, 1) }), { maxLength: 4 }).map((shares) => ({ type: 51 as const, shares })),
  fc.record({ type: u16Value.filter((t) => !knownTypes.has(t)), data: bytes(300) }),
);

export const helloSpecArb: fc.Arbitrary<HelloSpec> = fc.record({
  recordVersion: fc.oneof(fc.constantFrom(0x0301, 0x0303), fc.integer({ min: 0x0300, max: 0x03ff })),
  legacyVersion: u16Value,
  random: bytes(32, 32),
  sessionId: bytes(32),
  cipherSuites: fc.array(u16Value, { minLength: 1, maxLength: 60 }),
  compression: bytes(4, 1),
  // each extension type at most once, as RFC 8446 §4.2 requires
  extensions: fc.option(fc.uniqueArray(extensionArb, { selector: (e) => e.type, maxLength: 12 }), { freq: 8 }),
});
