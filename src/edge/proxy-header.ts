import { isIPv4, isIPv6, SocketAddress } from 'node:net';

/**
 * The PROXY protocol header an L4 balancer (HAProxy `send-proxy` /
 * `send-proxy-v2`, AWS NLB, …) puts before the client's first byte to say
 * whom it relays: version 1 is one line of text, version 2 a binary block
 * (haproxy.org/download/2.6/doc/proxy-protocol.txt). Pure parsing of the
 * bytes received so far; what to believe is decided by the listener.
 */

/** The client address a header names. */
export interface ProxySource {
  readonly address: string;
  readonly port: number;
  readonly family: 'IPv4' | 'IPv6';
}

export type ProxyHeaderParse =
  /** The bytes are not the start of a PROXY header (decided at the first byte that differs from both signatures). */
  | { readonly kind: 'none' }
  /** The start of one: parsing again can tell more once `need` bytes are in. */
  | { readonly kind: 'incomplete'; readonly need: number }
  /**
   * A complete header of `length` bytes. `source` is null when it names no
   * client to believe: v1 `UNKNOWN`, v2 `LOCAL` (the balancer's own health
   * checks), v2 `UNSPEC` or `UNIX` addresses; the connection keeps its own.
   */
  | { readonly kind: 'header'; readonly version: 1 | 2; readonly length: number; readonly source: ProxySource | null }
  | { readonly kind: 'malformed'; readonly why: string };

/** The spec's bound for a v1 line, CRLF included: "PROXY UNKNOWN" and two full IPv6 addresses with ports. */
export const maxV1HeaderBytes = 107;
/** What we accept after the 16 fixed bytes of v2: the biggest address block (UNIX, 216) and TLVs (ALPN, authority, unique id, TLS details) with room to spare. */
export const maxV2PayloadBytes = 512;

const v1Prefix = Buffer.from('PROXY ', 'latin1');
const v2Signature = Buffer.from('\r\n\r\n\0\r\nQUIT\n', 'latin1');
const v2FixedBytes = 16;
/** Address block sizes by v2 family (high nibble of byte 13): INET, INET6, UNIX. */
const v2AddressBytes: Record<number, number> = { 1: 12, 2: 36, 3: 216 };
const port = /^(?:0|[1-9]\d{0,4})$/;

const malformed = (why: string) => ({ kind: 'malformed', why }) as const;
const v1TooLong = malformed(`PROXY v1 line without CRLF within ${maxV1HeaderBytes} bytes`);
const strayByte = (data: Buffer, at: number) => malformed(`PROXY v1 line holds byte 0x${(data[at] as number).toString(16).padStart(2, '0')} at offset ${at}; expected printable ASCII ending in CRLF`);

/**
 * How the bytes start: 'v1' or 'v2' once a whole signature is in, 'none' as
 * soon as they differ from both, null while they are a prefix of one.
 */
export function proxySignatureOf(data: Buffer): 'v1' | 'v2' | 'none' | null {
  const v1 = prefixMatch(data, v1Prefix);
  const v2 = prefixMatch(data, v2Signature);
  if (v1 === 'whole') return 'v1';
  if (v2 === 'whole') return 'v2';
  return v1 === 'partial' || v2 === 'partial' ? null : 'none';
}

function prefixMatch(data: Buffer, signature: Buffer): 'whole' | 'partial' | 'differs' {
  const n = Math.min(data.length, signature.length);
  for (let i = 0; i < n; i++) if (data[i] !== signature[i]) return 'differs';
  return n === signature.length ? 'whole' : 'partial';
}

/** Parses the bytes received so far (the first bytes of a connection). */
export function parseProxyHeader(data: Buffer): ProxyHeaderParse {
  const signature = proxySignatureOf(data);
  if (signature === null) return { kind: 'incomplete', need: data.length + 1 };
  if (signature === 'none') return { kind: 'none' };
  return signature === 'v1' ? parseV1(data) : parseV2(data);
}

/** "PROXY" SP ("TCP4" | "TCP6") SP src SP dst SP sport SP dport CRLF, or "PROXY UNKNOWN" … CRLF. */
function parseV1(data: Buffer): ProxyHeaderParse {
  // printable ASCII up to CRLF: any other byte refuses the line at once, not at the length bound or the timeout
  const limit = Math.min(data.length, maxV1HeaderBytes);
  let end = v1Prefix.length;
  while (end < limit && (data[end] as number) >= 0x20 && (data[end] as number) <= 0x7e) end++;
  if (end === limit) return limit === maxV1HeaderBytes ? v1TooLong : { kind: 'incomplete', need: data.length + 1 };
  if (data[end] !== 0x0d) return strayByte(data, end);
  if (end + 1 === maxV1HeaderBytes) return v1TooLong;
  if (end + 1 === data.length) return { kind: 'incomplete', need: data.length + 1 };
  if (data[end + 1] !== 0x0a) return strayByte(data, end + 1);
  const length = end + 2;
  const line = data.toString('latin1', v1Prefix.length, end);
  // UNKNOWN: the receiver ignores the rest of the line and keeps the connection's own addresses
  if (line === 'UNKNOWN' || line.startsWith('UNKNOWN ')) return { kind: 'header', version: 1, length, source: null };
  const fields = line.split(' ');
  const [protocol, src, dst, sport, dport] = fields;
  if (protocol !== 'TCP4' && protocol !== 'TCP6') return malformed(`PROXY v1 protocol ${JSON.stringify(protocol)}; expected TCP4, TCP6 or UNKNOWN`);
  if (fields.length !== 5) return malformed(`PROXY v1 ${protocol} line has ${fields.length - 1} fields after the protocol; expected source and destination address and port, separated by single spaces`);
  const valid = protocol === 'TCP4' ? isIPv4 : (a: string) => isIPv6(a) && !a.includes('%');
  for (const [what, address] of [['source', src], ['destination', dst]] as const) {
    if (!valid(address as string)) return malformed(`PROXY v1 ${protocol} ${what} address ${JSON.stringify(address)} is not an ${protocol === 'TCP4' ? 'IPv4' : 'IPv6'} address`);
  }
  for (const [what, value] of [['source', sport], ['destination', dport]] as const) {
    if (!port.test(value as string) || Number(value) > 65535) return malformed(`PROXY v1 ${what} port ${JSON.stringify(value)} is not a port number (0-65535, no leading zeros)`);
  }
  return { kind: 'header', version: 1, length, source: sourceOf(src as string, Number(sport), protocol === 'TCP4' ? 'IPv4' : 'IPv6') };
}

/** 12-byte signature, version/command, family/transport, payload length (big endian), addresses, TLVs. */
function parseV2(data: Buffer): ProxyHeaderParse {
  if (data.length < v2FixedBytes) return { kind: 'incomplete', need: v2FixedBytes };
  const versionCommand = data[12] as number;
  if (versionCommand >> 4 !== 2) return malformed(`PROXY v2 signature with version ${versionCommand >> 4}; expected 2`);
  const command = versionCommand & 0x0f;
  if (command > 1) return malformed(`PROXY v2 command ${command}; expected LOCAL (0) or PROXY (1)`);
  const payload = data.readUInt16BE(14);
  if (payload > maxV2PayloadBytes) return malformed(`PROXY v2 header announces ${payload} bytes of addresses and TLVs; at most ${maxV2PayloadBytes} are accepted`);
  const length = v2FixedBytes + payload;
  if (data.length < length) return { kind: 'incomplete', need: length };
  // LOCAL: the balancer speaks for itself (health checks); the family and the block are ignored, as the spec says
  if (command === 0) return { kind: 'header', version: 2, length, source: null };
  const family = (data[13] as number) >> 4;
  const transport = (data[13] as number) & 0x0f;
  if (family === 0) return { kind: 'header', version: 2, length, source: null };
  const addressBytes = v2AddressBytes[family];
  if (addressBytes === undefined) return malformed(`PROXY v2 address family ${family}; expected UNSPEC (0), INET (1), INET6 (2) or UNIX (3)`);
  if (transport !== 1) return malformed(`PROXY v2 transport ${transport}; this listener relays TCP (STREAM, 1) only`);
  if (payload < addressBytes) return malformed(`PROXY v2 header announces ${payload} bytes; its ${['', 'INET', 'INET6', 'UNIX'][family]} addresses need ${addressBytes}`);
  const tlvProblem = checkTlvs(data, v2FixedBytes + addressBytes, length);
  if (tlvProblem) return malformed(tlvProblem);
  // a UNIX socket path is no client address: the connection keeps its own
  if (family === 3) return { kind: 'header', version: 2, length, source: null };
  const at = v2FixedBytes;
  if (family === 1) return { kind: 'header', version: 2, length, source: sourceOf(`${data[at]}.${data[at + 1]}.${data[at + 2]}.${data[at + 3]}`, data.readUInt16BE(at + 8), 'IPv4') };
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(data.readUInt16BE(at + i).toString(16));
  return { kind: 'header', version: 2, length, source: sourceOf(groups.join(':'), data.readUInt16BE(at + 32), 'IPv6') };
}

/**
 * TLVs (type, 16-bit length, value) fill the rest of the block; their values
 * are skipped (nothing here needs ALPN, authority or TLS details from the
 * balancer), but they must tile it exactly: a TLV running past the announced
 * length means the lengths cannot be trusted.
 */
function checkTlvs(data: Buffer, from: number, end: number): string | null {
  let at = from;
  while (at < end) {
    if (end - at < 3) return `PROXY v2 TLV area ends with ${end - at} stray byte${end - at === 1 ? '' : 's'}; a TLV needs at least 3`;
    const next = at + 3 + data.readUInt16BE(at + 1);
    if (next > end) return `PROXY v2 TLV of type 0x${(data[at] as number).toString(16).padStart(2, '0')} runs ${next - end} bytes past the announced header length`;
    at = next;
  }
  return null;
}

/** The address as Node would print it for a socket (IPv6 compressed, lower case), so one client has one key everywhere. */
function sourceOf(address: string, sourcePort: number, family: 'IPv4' | 'IPv6'): ProxySource {
  return { address: family === 'IPv6' ? new SocketAddress({ address, family: 'ipv6' }).address : address, port: sourcePort, family };
}
