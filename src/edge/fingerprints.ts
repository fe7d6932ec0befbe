import { hash } from 'node:crypto';
import type { Socket } from 'node:net';
import { highestOfferedVersion, versionName, type ClientHello } from './client-hello.js';
import { postQuantumGroups } from '../config/index.js';
import { weakOfferOf, type WeakOffer } from './weak-offer.js';

/**
 * ClientHello fingerprints: JA4 (FoxIO's, technical_details/JA4.md), the one
 * to use, and JA3 (Salesforce's) for tools that still speak it. Both ignore
 * GREASE values (RFC 8701: 0x?a?a with equal bytes).
 */

const isGrease = (v: number): boolean => (v & 0x0f0f) === 0x0a0a && v >> 8 === (v & 0xff);
/** Four-digit hex of a 16-bit value; the few values clients send are formatted once each. */
const hexOf = new Map<number, string>();
function hex4(v: number): string {
  let text = hexOf.get(v);
  if (text === undefined) {
    text = v.toString(16).padStart(4, '0');
    hexOf.set(v, text);
  }
  return text;
}
/** Hex lists sort like the numbers (fixed width, lower case): sort numerically, then format. */
const sortedHex = (values: readonly number[]): string => Uint16Array.from(values).sort().reduce((text, v, i) => (i === 0 ? hex4(v) : `${text},${hex4(v)}`), '');
const truncatedSha256 = (text: string): string => hash('sha256', text, 'hex').slice(0, 12);
const jaVersions: Record<number, string> = { 0x0304: '13', 0x0303: '12', 0x0302: '11', 0x0301: '10', 0x0300: 's3', 0x0002: 's2' };
const alphanumeric = /^[A-Za-z0-9]$/;

/** JA4_a's two ALPN characters: first and last of the first value, or of its hex when either is not alphanumeric; "00" without ALPN. */
function alpnCode(alpn: readonly string[]): string {
  const first = alpn[0];
  if (!first) return '00';
  const a = first[0] as string;
  const b = first.at(-1) as string;
  if (alphanumeric.test(a) && alphanumeric.test(b)) return a + b;
  const hex = Buffer.from(first, 'latin1').toString('hex');
  return (hex[0] as string) + (hex.at(-1) as string);
}

export function ja4(hello: ClientHello): string {
  const versions = hello.supportedVersions.filter((v) => !isGrease(v));
  const version = versions.length ? Math.max(...versions) : hello.legacyVersion;
  const ciphers = hello.cipherSuites.filter((c) => !isGrease(c));
  const extensions = hello.extensions.filter((e) => !isGrease(e));
  const count = (n: number) => String(Math.min(n, 99)).padStart(2, '0');
  const a = `t${jaVersions[version] ?? '00'}${hello.serverName === null ? 'i' : 'd'}${count(ciphers.length)}${count(extensions.length)}${alpnCode(hello.alpn)}`;
  const b = ciphers.length ? truncatedSha256(sortedHex(ciphers)) : '000000000000';
  // SNI and ALPN are in part a already
  const sorted = sortedHex(extensions.filter((e) => e !== 0x0000 && e !== 0x0010));
  const sigalgs = hello.signatureAlgorithms.filter((s) => !isGrease(s)).map(hex4).join(',');
  const c = sorted ? truncatedSha256(sigalgs ? `${sorted}_${sigalgs}` : sorted) : '000000000000';
  return `${a}_${b}_${c}`;
}

/** The JA3 string (SSLVersion,Ciphers,Extensions,EllipticCurves,EllipticCurvePointFormats) and its MD5. */
export function ja3(hello: ClientHello): { text: string; hash: string } {
  const list = (values: readonly number[]) => values.filter((v) => !isGrease(v)).join('-');
  const text = `${hello.legacyVersion},${list(hello.cipherSuites)},${list(hello.extensions)},${list(hello.groups)},${hello.ecPointFormats.join('-')}`;
  return { text, hash: hash('md5', text, 'hex') };
}

/** What the edge learnt from a connection's ClientHello, for the events, logs and metrics of the layers above. */
export interface HelloSummary {
  readonly ja4: string;
  /** The server name the client asked for, lower case; null without SNI. */
  readonly sni: string | null;
  /** JA3's MD5, for tools that still speak it. */
  readonly ja3: string;
  /** Why the offer would be refused by a stricter setting, or null (see weak-offer.ts). */
  readonly weakness: WeakOffer | null;
  /** The highest version offered, as versionName() spells it ("TLSv1.0" …). */
  readonly offered: string;
  /** performance.now() when the TCP connection was accepted: the handshake's duration starts there. */
  readonly acceptedAt: number;
  /** supported_groups and the groups of key_share, in client order: from these and our profile the TLS layer tells the group a handshake used. */
  readonly groups: readonly number[];
  readonly keyShares: readonly number[];
  /** Whether the client sent a post-quantum hybrid key share (X25519MLKEM768 or a sibling). */
  readonly postQuantum: boolean;
}

const summaries = new WeakMap<Socket, HelloSummary>();

/** Most connections come from a few kinds of client: one copy of each fingerprint (bounded) instead of one per connection. */
const fingerprints = new Map<string, string>();
function intern(value: string): string {
  const known = fingerprints.get(value);
  if (known !== undefined) return known;
  if (fingerprints.size < 1024) fingerprints.set(value, value);
  return value;
}

/** Everything of a ClientHello that JA3 and JA4 are computed from. */
type Shape = Pick<ClientHello, 'legacyVersion' | 'supportedVersions' | 'cipherSuites' | 'extensions' | 'serverName' | 'alpn' | 'signatureAlgorithms' | 'groups' | 'ecPointFormats'>;
const shapeLists = ['supportedVersions', 'cipherSuites', 'extensions', 'signatureAlgorithms', 'groups', 'ecPointFormats'] as const;

/** FNV-1a over the shape's numbers: no string is built to look a client up. */
function shapeHash(h: Shape): number {
  let x = Math.imul(0x811c9dc5 ^ h.legacyVersion, 16777619);
  for (const name of shapeLists) {
    const list = h[name];
    x = Math.imul(x ^ list.length, 16777619);
    for (let i = 0; i < list.length; i++) x = Math.imul(x ^ (list[i] as number), 16777619);
  }
  x = Math.imul(x ^ (h.serverName === null ? 0 : 1), 16777619);
  const alpn = h.alpn[0] ?? '';
  for (let i = 0; i < alpn.length; i++) x = Math.imul(x ^ alpn.charCodeAt(i), 16777619);
  return x >>> 0;
}

const sameList = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((v, i) => v === b[i]);

function sameShape(a: Shape, b: Shape): boolean {
  return a.legacyVersion === b.legacyVersion && (a.serverName === null) === (b.serverName === null) && (a.alpn[0] ?? '') === (b.alpn[0] ?? '') && shapeLists.every((name) => sameList(a[name], b[name]));
}

/**
 * The fingerprints of the ClientHellos seen, by everything they are computed
 * from: a client sends the same lists on every connection, so each kind of
 * client is fingerprinted once (at most 1024 kinds kept; a client that
 * shuffles its extensions, as Chrome does, or sends random GREASE values is
 * fingerprinted every time). Found by a hash of the shape and confirmed field
 * by field, so a collision costs a fingerprinting, never a wrong one.
 */
const fingerprintsByShape = new Map<number, { readonly shape: Shape; readonly ja4: string; readonly ja3: string }>();

function fingerprintsOf(hello: ClientHello): { readonly ja4: string; readonly ja3: string } {
  const hash = shapeHash(hello);
  const known = fingerprintsByShape.get(hash);
  if (known !== undefined && sameShape(known.shape, hello)) return known;
  const computed = { shape: hello, ja4: intern(ja4(hello)), ja3: intern(ja3(hello).hash) };
  if (known === undefined && fingerprintsByShape.size < 1024) fingerprintsByShape.set(hash, computed);
  return computed;
}

/** Fingerprints and classifies a connection's ClientHello once, for every layer above to read. */
export function summarizeHello(socket: Socket, hello: ClientHello, acceptedAt: number): HelloSummary {
  const { ja4, ja3 } = fingerprintsOf(hello);
  const summary: HelloSummary = {
    sni: hello.serverName,
    ja4,
    ja3,
    weakness: weakOfferOf(hello),
    offered: versionName(highestOfferedVersion(hello)),
    acceptedAt,
    groups: hello.groups,
    keyShares: hello.keyShares,
    postQuantum: hello.keyShares.some((g) => postQuantumGroups.has(g)),
  };
  summaries.set(socket, summary);
  return summary;
}

/** The summary of the ClientHello that arrived on a raw TCP socket; null before it (or for sockets the edge did not accept). */
export function helloSummaryOf(socket: Socket): HelloSummary | null {
  return summaries.get(socket) ?? null;
}
