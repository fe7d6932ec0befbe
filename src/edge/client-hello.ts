/**
 * A TLS ClientHello reader (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2, RFC 6066 §3,
 * RFC 7301 §3.1), over Buffers and without dependencies. It reassembles a
 * ClientHello split across TLS records and reads only what the proxy needs
 * before choosing a certificate. It never throws: every input is classified.
 */

export interface ClientHello {
  /** Version in the record header, e.g. 0x0301. */
  readonly recordVersion: number;
  /** legacy_version of the ClientHello body: the highest version of a pre-1.3 client. */
  readonly legacyVersion: number;
  /** supported_versions extension (TLS 1.3 clients), in client order; empty when absent. */
  readonly supportedVersions: readonly number[];
  readonly cipherSuites: readonly number[];
  /** Extension types in the order sent. */
  readonly extensions: readonly number[];
  /** host_name from server_name, lower case; null when absent. */
  readonly serverName: string | null;
  readonly alpn: readonly string[];
  readonly groups: readonly number[];
  /** The groups of the key_share extension (TLS 1.3), in client order; empty when absent. */
  readonly keyShares: readonly number[];
  readonly signatureAlgorithms: readonly number[];
  /** ec_point_formats (for JA3); empty when absent. */
  readonly ecPointFormats: readonly number[];
}

export type HelloParse =
  | { readonly kind: 'hello'; readonly hello: ClientHello }
  /** More bytes are needed: nothing can change before `need` bytes in total have arrived. */
  | { readonly kind: 'incomplete'; readonly need: number }
  /** Not a TLS handshake record: `firstBytes` tells what it looked like. */
  | { readonly kind: 'not_tls'; readonly looksLikeHttp: boolean }
  /** `alert`: what OpenSSL answers the same bytes with (a TLS alert description), or null where it just closes. */
  | { readonly kind: 'malformed'; readonly why: string; readonly alert: TlsAlert | null }
  | { readonly kind: 'too_large' };

/** TLS alert descriptions (RFC 8446 §6) the edge sends for a ClientHello it refuses. */
export const tlsAlert = {
  handshakeFailure: 40,
  unexpectedMessage: 10,
  recordOverflow: 22,
  illegalParameter: 47,
  decodeError: 50,
  unrecognizedName: 112,
} as const;
export type TlsAlert = (typeof tlsAlert)[keyof typeof tlsAlert];

/** Upper bound for a ClientHello (post-quantum key shares make them a few KiB; 32 KiB leaves room). */
export const maxClientHelloBytes = 32 * 1024;

const recordHeader = 5;
const handshakeType = 22;
const clientHelloType = 1;
const httpMethodStart = /^(?:GET|POST|PUT|HEAD|DELETE|OPTIONS|PATCH|CONNECT|TRACE|PRI) /;
const upperCaseRun = /^[A-Z]+$/;

const incomplete = (need: number) => ({ kind: 'incomplete', need }) as const;
/** Answered like OpenSSL (hence nginx) answers the same bytes; syntax errors are decode_error. */
const malformed = (why: string, alert: TlsAlert | null = tlsAlert.decodeError) => ({ kind: 'malformed', why, alert }) as const;
/** TLS content types other than handshake (RFC 8446 §5.1): change_cipher_spec, alert, application_data, heartbeat. */
const otherRecordTypes: ReadonlySet<number> = new Set([20, 21, 23, 24]);

/** The highest TLS version a ClientHello offers: supported_versions when present, else legacy_version. */
export function highestOfferedVersion(hello: ClientHello): number {
  let best = 0;
  for (const v of hello.supportedVersions) if ((v & 0x0f0f) === v && v > best && v <= 0x0304) best = v; // skip GREASE (0x?a?a)
  return best || hello.legacyVersion;
}

/** "TLSv1.0" … for versions of the wire format. */
export function versionName(version: number): string {
  const names: Record<number, string> = { 0x0300: 'SSLv3', 0x0301: 'TLSv1.0', 0x0302: 'TLSv1.1', 0x0303: 'TLSv1.2', 0x0304: 'TLSv1.3' };
  return names[version] ?? `0x${version.toString(16).padStart(4, '0')}`;
}

/**
 * Parses the bytes received so far. Collects handshake bytes from consecutive
 * handshake records until the whole ClientHello message is present.
 */
export function parseClientHello(data: Buffer): HelloParse {
  if (data.length === 0) return incomplete(1);
  if (data[0] !== handshakeType) {
    if (otherRecordTypes.has(data[0] as number)) {
      if (data.length < 2) return incomplete(2);
      if (data[1] === 3) return malformed(`a record of type ${data[0]} arrived before any ClientHello`, tlsAlert.unexpectedMessage);
    }
    // a short run of capitals may still become an HTTP method (looksLikeHttp reads 8 bytes); the very
    // next byte can decide, as anything but a capital letter ends the run: ask for that byte only,
    // so that "GE\0" is refused at once instead of after the handshake timeout
    if (data.length < 8 && upperCaseRun.test(data.toString('latin1'))) return incomplete(data.length + 1);
    return { kind: 'not_tls', looksLikeHttp: httpMethodStart.test(data.subarray(0, 8).toString('latin1')) };
  }
  // Reassemble the handshake layer from records.
  const parts: Buffer[] = [];
  let handshakeBytes = 0;
  let needed = -1;
  let offset = 0;
  let recordVersion = 0;
  while (offset + recordHeader <= data.length) {
    // tiny records cost 5 header bytes each: bound the raw bytes too
    if (offset > 2 * maxClientHelloBytes) return { kind: 'too_large' };
    if (data[offset] !== handshakeType) return malformed('a non-handshake record arrived before the ClientHello was complete', tlsAlert.unexpectedMessage);
    const version = data.readUInt16BE(offset + 1);
    if (offset === 0) recordVersion = version;
    if (version >> 8 !== 3) return malformed(`record version 0x${version.toString(16)} is not TLS`, null);
    const length = data.readUInt16BE(offset + 3);
    if (length === 0) return malformed('empty handshake record', null);
    if (length > 16384 + 2048) return malformed(`record length ${length} is over 18432`, tlsAlert.recordOverflow);
    if (offset + recordHeader + length > data.length) return incomplete(offset + recordHeader + length);
    parts.push(data.subarray(offset + recordHeader, offset + recordHeader + length));
    handshakeBytes += length;
    offset += recordHeader + length;
    if (needed < 0 && handshakeBytes >= 4) {
      const head = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
      if (head[0] !== clientHelloType) return malformed(`handshake message type ${head[0]} is not ClientHello`, tlsAlert.unexpectedMessage);
      needed = 4 + head.readUIntBE(1, 3);
      if (needed > maxClientHelloBytes) return { kind: 'too_large' };
    }
    if (needed >= 0 && handshakeBytes >= needed) {
      const message = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
      return parseBody(message.subarray(4, needed), recordVersion);
    }
  }
  return incomplete(offset + recordHeader);
}

/** A bounds-checked cursor; every read returns -1 / null past the end instead of throwing. */
class Reader {
  constructor(
    readonly buf: Buffer,
    public pos = 0,
    readonly end = buf.length,
  ) {}
  u8(): number {
    return this.pos + 1 <= this.end ? (this.buf[this.pos++] as number) : -1;
  }
  u16(): number {
    if (this.pos + 2 > this.end) return -1;
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  /** A sub-reader over the next `n` bytes, or null when they are not all there. */
  take(n: number): Reader | null {
    if (n < 0 || this.pos + n > this.end) return null;
    const r = new Reader(this.buf, this.pos, this.pos + n);
    this.pos += n;
    return r;
  }
  /** A vector with a 1- or 2-byte length prefix. */
  vector(lengthBytes: 1 | 2): Reader | null {
    const n = lengthBytes === 1 ? this.u8() : this.u16();
    return n < 0 ? null : this.take(n);
  }
  get remaining(): number {
    return this.end - this.pos;
  }
}

function u16List(r: Reader | null): number[] | null {
  if (!r || r.remaining % 2 !== 0) return null;
  const out: number[] = [];
  while (r.remaining > 0) out.push(r.u16());
  return out;
}

function parseBody(body: Buffer, recordVersion: number): HelloParse {
  const r = new Reader(body);
  const legacyVersion = r.u16();
  if (legacyVersion < 0 || !r.take(32)) return malformed('truncated ClientHello header');
  if (!r.vector(1)) return malformed('bad session_id');
  const cipherSuites = u16List(r.vector(2));
  if (!cipherSuites) return malformed('bad cipher_suites');
  if (cipherSuites.length === 0) return malformed('no cipher_suites', tlsAlert.illegalParameter);
  if (!r.vector(1)) return malformed('bad compression_methods');
  const hello = {
    recordVersion,
    legacyVersion,
    supportedVersions: [] as number[],
    cipherSuites,
    extensions: [] as number[],
    serverName: null as string | null,
    alpn: [] as string[],
    groups: [] as number[],
    keyShares: [] as number[],
    signatureAlgorithms: [] as number[],
    ecPointFormats: [] as number[],
  };
  if (r.remaining === 0) return { kind: 'hello', hello }; // no extensions at all (old clients)
  const exts = r.vector(2);
  if (!exts || r.remaining !== 0) return malformed('bad extensions block');
  while (exts.remaining > 0) {
    const type = exts.u16();
    const data = exts.vector(2);
    if (type < 0 || !data) return malformed('truncated extension');
    hello.extensions.push(type);
    const problem = readExtension(type, data, hello);
    if (problem) return malformed(problem, problem === notHostName ? tlsAlert.unrecognizedName : tlsAlert.decodeError);
  }
  return { kind: 'hello', hello };
}

const notHostName = 'server_name is not a host name';

function readExtension(
  type: number,
  data: Reader,
  hello: { serverName: string | null; alpn: string[]; supportedVersions: number[]; groups: number[]; keyShares: number[]; signatureAlgorithms: number[]; ecPointFormats: number[] },
): string | null {
  switch (type) {
    case 0: {
      const list = data.vector(2);
      if (!list) return 'bad server_name';
      while (list.remaining > 0) {
        const nameType = list.u8();
        const name = list.vector(2);
        if (nameType < 0 || !name) return 'bad server_name entry';
        if (nameType === 0 && hello.serverName === null) {
          const text = name.buf.toString('latin1', name.pos, name.end);
          // host names are LDH ASCII (RFC 6066 §3); anything else cannot name a site
          if (!/^[A-Za-z0-9._-]{1,253}$/.test(text)) return notHostName;
          hello.serverName = text.toLowerCase().replace(/\.$/, '');
        }
      }
      return null;
    }
    case 16: {
      const list = data.vector(2);
      if (!list) return 'bad application_layer_protocol_negotiation';
      while (list.remaining > 0) {
        const proto = list.vector(1);
        if (!proto) return 'bad ALPN protocol name';
        hello.alpn.push(proto.buf.toString('latin1', proto.pos, proto.end));
      }
      return null;
    }
    case 43: {
      const versions = u16List(data.vector(1));
      if (!versions) return 'bad supported_versions';
      hello.supportedVersions.push(...versions);
      return null;
    }
    case 10: {
      const groups = u16List(data.vector(2));
      if (!groups) return 'bad supported_groups';
      hello.groups.push(...groups);
      return null;
    }
    case 51: {
      // read for what it offers, never refused here: OpenSSL judges key_share only when it negotiates TLS 1.3
      const shares = data.vector(2);
      while (shares && shares.remaining > 0) {
        const group = shares.u16();
        if (group < 0 || !shares.vector(2)) break;
        hello.keyShares.push(group);
      }
      return null;
    }
    case 11: {
      const formats = data.vector(1);
      if (!formats) return 'bad ec_point_formats';
      while (formats.remaining > 0) hello.ecPointFormats.push(formats.u8());
      return null;
    }
    case 13: {
      const algs = u16List(data.vector(2));
      if (!algs) return 'bad signature_algorithms';
      hello.signatureAlgorithms.push(...algs);
      return null;
    }
    default:
      return null;
  }
}
