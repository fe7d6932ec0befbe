import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { maxV1HeaderBytes, maxV2PayloadBytes, parseProxyHeader, proxySignatureOf, type ProxyHeaderParse } from '../../src/edge/proxy-header.js';

const signature = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

/** A v2 header: version/command byte, family/transport byte, then the payload (addresses and TLVs) with its length. */
function v2(versionCommand: number, familyTransport: number, payload: Buffer, announced = payload.length): Buffer {
  const fixed = Buffer.from([versionCommand, familyTransport, 0, 0]);
  fixed.writeUInt16BE(announced, 2);
  return Buffer.concat([signature, fixed, payload]);
}

const ipv4Block = (src: number[], dst: number[], sport: number, dport: number) => {
  const b = Buffer.alloc(12);
  Buffer.from(src).copy(b, 0);
  Buffer.from(dst).copy(b, 4);
  b.writeUInt16BE(sport, 8);
  b.writeUInt16BE(dport, 10);
  return b;
};

const ipv6Block = (src: string, dst: string, sport: number, dport: number) => {
  const b = Buffer.alloc(36);
  Buffer.from(src.replace(/:/g, ''), 'hex').copy(b, 0);
  Buffer.from(dst.replace(/:/g, ''), 'hex').copy(b, 16);
  b.writeUInt16BE(sport, 32);
  b.writeUInt16BE(dport, 34);
  return b;
};

const tlv = (type: number, value: Buffer) => {
  const head = Buffer.from([type, 0, 0]);
  head.writeUInt16BE(value.length, 1);
  return Buffer.concat([head, value]);
};

const text = (s: string) => Buffer.from(s, 'latin1');
const clientHelloStart = Buffer.from('160301020001', 'hex');

function header(r: ProxyHeaderParse) {
  assert.equal(r.kind, 'header', JSON.stringify(r));
  return r as Extract<ProxyHeaderParse, { kind: 'header' }>;
}

function malformedWhy(r: ProxyHeaderParse): string {
  assert.equal(r.kind, 'malformed', JSON.stringify(r));
  return (r as Extract<ProxyHeaderParse, { kind: 'malformed' }>).why;
}

describe('PROXY protocol v1', () => {
  test('reads the client of a TCP4 line and says where the client bytes begin', () => {
    const line = 'PROXY TCP4 192.0.2.7 10.0.0.5 51234 8443\r\n';
    const r = header(parseProxyHeader(Buffer.concat([text(line), clientHelloStart])));
    assert.deepEqual(r, { kind: 'header', version: 1, length: line.length, source: { address: '192.0.2.7', port: 51234, family: 'IPv4' } });
  });

  test('reads a TCP6 line and writes the address as Node prints socket addresses', () => {
    const r = header(parseProxyHeader(text('PROXY TCP6 2001:DB8:0:0:0:0:0:7 2001:db8::1 65535 443\r\n')));
    assert.deepEqual(r.source, { address: '2001:db8::7', port: 65535, family: 'IPv6' });
  });

  test('UNKNOWN names no client, with or without addresses after it', () => {
    assert.deepEqual(header(parseProxyHeader(text('PROXY UNKNOWN\r\n'))), { kind: 'header', version: 1, length: 15, source: null });
    const longest = `PROXY UNKNOWN ${'ffff:'.repeat(7)}ffff ${'ffff:'.repeat(7)}ffff 65535 65535\r\n`;
    assert.equal(longest.length, maxV1HeaderBytes, 'the spec\'s worst case is the bound');
    assert.equal(header(parseProxyHeader(text(longest))).source, null);
  });

  test('asks for more on every strict prefix, as when the line arrives in pieces', () => {
    const line = text('PROXY TCP4 192.0.2.7 10.0.0.5 51234 8443\r\n');
    for (let n = 0; n < line.length; n++) {
      const r = parseProxyHeader(line.subarray(0, n));
      assert.equal(r.kind, 'incomplete', `prefix of ${n} bytes`);
      assert.ok(r.kind === 'incomplete' && r.need > n);
    }
    assert.equal(parseProxyHeader(line).kind, 'header');
  });

  test('refuses a line longer than 107 bytes as soon as the 107th byte is no CRLF', () => {
    const long = text(`PROXY UNKNOWN ${'x'.repeat(200)}`);
    for (const n of [maxV1HeaderBytes - 1, maxV1HeaderBytes - 2]) assert.equal(parseProxyHeader(long.subarray(0, n)).kind, 'incomplete');
    assert.match(malformedWhy(parseProxyHeader(long.subarray(0, maxV1HeaderBytes))), /without CRLF within 107 bytes/);
    // a CR as the 107th byte would put the LF at the 108th
    assert.match(malformedWhy(parseProxyHeader(text(`PROXY UNKNOWN ${'x'.repeat(92)}\r\n`))), /within 107 bytes/);
  });

  const broken: [string, string, RegExp][] = [
    ['an unknown protocol', 'PROXY UDP4 192.0.2.7 10.0.0.5 1 2\r\n', /protocol "UDP4"; expected TCP4, TCP6 or UNKNOWN/],
    ['a missing port', 'PROXY TCP4 192.0.2.7 10.0.0.5 1\r\n', /3 fields after the protocol/],
    ['two spaces', 'PROXY TCP4 192.0.2.7  10.0.0.5 1 2\r\n', /fields after the protocol/],
    ['an IPv6 source in TCP4', 'PROXY TCP4 2001:db8::1 10.0.0.5 1 2\r\n', /TCP4 source address "2001:db8::1" is not an IPv4 address/],
    ['an IPv4 destination in TCP6', 'PROXY TCP6 2001:db8::1 10.0.0.5 1 2\r\n', /TCP6 destination address "10.0.0.5" is not an IPv6 address/],
    ['an IPv6 zone', 'PROXY TCP6 fe80::1%eth0 fe80::2 1 2\r\n', /is not an IPv6 address/],
    ['a name for an address', 'PROXY TCP4 client.example 10.0.0.5 1 2\r\n', /"client.example" is not an IPv4 address/],
    ['a port past 65535', 'PROXY TCP4 192.0.2.7 10.0.0.5 65536 2\r\n', /source port "65536" is not a port number/],
    ['a port with a leading zero', 'PROXY TCP4 192.0.2.7 10.0.0.5 1 0443\r\n', /destination port "0443"/],
    ['a bare LF', 'PROXY TCP4 192.0.2.7 10.0.0.5 1 2\n', /byte 0x0a at offset 33; expected printable ASCII ending in CRLF/],
    ['a CR without LF', 'PROXY TCP4 192.0.2.7 10.0.0.5 1 2\rX', /byte 0x58 at offset 34/],
    ['a NUL inside', 'PROXY TCP4 192.0.2.7\0', /byte 0x00 at offset 20/],
  ];
  for (const [what, line, why] of broken) {
    test(`refuses ${what}, saying what is wrong`, () => assert.match(malformedWhy(parseProxyHeader(text(line))), why));
  }
});

describe('PROXY protocol v2', () => {
  test('reads the client of a PROXY command over TCP/IPv4 and skips its TLVs', () => {
    const payload = Buffer.concat([ipv4Block([198, 51, 100, 9], [10, 0, 0, 5], 40000, 8443), tlv(0x01, text('h2')), tlv(0x02, text('api.test')), tlv(0x04, Buffer.alloc(0))]);
    const bytes = v2(0x21, 0x11, payload);
    const r = header(parseProxyHeader(Buffer.concat([bytes, clientHelloStart])));
    assert.deepEqual(r, { kind: 'header', version: 2, length: bytes.length, source: { address: '198.51.100.9', port: 40000, family: 'IPv4' } });
  });

  test('reads TCP/IPv6 clients, IPv4-mapped ones included, in Node\'s notation', () => {
    const r = header(parseProxyHeader(v2(0x21, 0x21, ipv6Block('2001:0db8:0000:0000:0000:0000:0000:0042', '2001:0db8:0000:0000:0000:0000:0000:0001', 1, 443))));
    assert.deepEqual(r.source, { address: '2001:db8::42', port: 1, family: 'IPv6' });
    const mapped = header(parseProxyHeader(v2(0x21, 0x21, ipv6Block('0000:0000:0000:0000:0000:ffff:c000:0207', '0000:0000:0000:0000:0000:0000:0000:0001', 2, 443))));
    assert.equal(mapped.source?.address, '::ffff:192.0.2.7');
  });

  test('LOCAL (a balancer health check) names no client, whatever its block holds', () => {
    assert.deepEqual(header(parseProxyHeader(v2(0x20, 0x00, Buffer.alloc(0)))), { kind: 'header', version: 2, length: 16, source: null });
    assert.equal(header(parseProxyHeader(v2(0x20, 0x11, ipv4Block([1, 2, 3, 4], [5, 6, 7, 8], 1, 2)))).source, null);
  });

  test('UNSPEC and UNIX addresses keep the connection\'s own peer', () => {
    assert.equal(header(parseProxyHeader(v2(0x21, 0x00, Buffer.alloc(0)))).source, null);
    assert.equal(header(parseProxyHeader(v2(0x21, 0x31, Buffer.alloc(216)))).source, null);
  });

  test('asks for more on every strict prefix, then for the whole announced length at once', () => {
    const bytes = v2(0x21, 0x11, Buffer.concat([ipv4Block([198, 51, 100, 9], [10, 0, 0, 5], 1, 2), tlv(0xe0, Buffer.alloc(40))]));
    for (let n = 0; n < bytes.length; n++) assert.equal(parseProxyHeader(bytes.subarray(0, n)).kind, 'incomplete', `prefix of ${n} bytes`);
    const afterFixed = parseProxyHeader(bytes.subarray(0, 16));
    assert.deepEqual(afterFixed, { kind: 'incomplete', need: bytes.length });
  });

  test('accepts the largest header it promises and refuses a larger one from its first 16 bytes', () => {
    const biggest = v2(0x21, 0x11, Buffer.concat([ipv4Block([192, 0, 2, 1], [10, 0, 0, 5], 1, 2), tlv(0xee, Buffer.alloc(maxV2PayloadBytes - 12 - 3))]));
    assert.equal(biggest.length, 16 + maxV2PayloadBytes);
    assert.equal(header(parseProxyHeader(biggest)).source?.address, '192.0.2.1');
    const tooBig = v2(0x21, 0x11, Buffer.alloc(0), maxV2PayloadBytes + 1);
    assert.match(malformedWhy(parseProxyHeader(tooBig)), /announces 513 bytes of addresses and TLVs; at most 512 are accepted/);
    assert.match(malformedWhy(parseProxyHeader(v2(0x21, 0x11, Buffer.alloc(0), 65535))), /65535 bytes/);
  });

  const broken: [string, Buffer, RegExp][] = [
    ['version 1 in the binary format', v2(0x11, 0x11, ipv4Block([1, 2, 3, 4], [5, 6, 7, 8], 1, 2)), /version 1; expected 2/],
    ['an unknown command', v2(0x22, 0x11, ipv4Block([1, 2, 3, 4], [5, 6, 7, 8], 1, 2)), /command 2; expected LOCAL \(0\) or PROXY \(1\)/],
    ['an unknown family', v2(0x21, 0x41, Buffer.alloc(12)), /address family 4/],
    ['UDP', v2(0x21, 0x12, ipv4Block([1, 2, 3, 4], [5, 6, 7, 8], 1, 2)), /transport 2; this listener relays TCP/],
    ['an IPv4 block cut short', v2(0x21, 0x11, Buffer.alloc(8)), /announces 8 bytes; its INET addresses need 12/],
    ['an IPv6 block cut short', v2(0x21, 0x21, Buffer.alloc(12)), /its INET6 addresses need 36/],
    ['a TLV running past the header', v2(0x21, 0x11, Buffer.concat([ipv4Block([1, 2, 3, 4], [5, 6, 7, 8], 1, 2), Buffer.from([0x01, 0x00, 0x09, 0x68, 0x32])])), /TLV of type 0x01 runs 7 bytes past/],
    ['stray bytes after the TLVs', v2(0x21, 0x11, Buffer.concat([ipv4Block([1, 2, 3, 4], [5, 6, 7, 8], 1, 2), Buffer.from([0x04, 0x00])])), /ends with 2 stray bytes/],
  ];
  for (const [what, bytes, why] of broken) {
    test(`refuses ${what}, saying what is wrong`, () => assert.match(malformedWhy(parseProxyHeader(bytes)), why));
  }
});

describe('telling a PROXY header from other first bytes', () => {
  test('a ClientHello, plain HTTP or garbage is no header from its first differing byte', () => {
    for (const start of [clientHelloStart, text('GET / HTTP/1.1\r\n'), text('PROXZ'), text('PROXYTCP4'), text('\r\n\r\nX'), Buffer.from([0])]) {
      assert.equal(parseProxyHeader(start).kind, 'none', JSON.stringify(start.toString('latin1')));
      assert.equal(proxySignatureOf(start), 'none');
    }
  });

  test('a prefix of either signature is undecided until the whole signature is in', () => {
    assert.equal(proxySignatureOf(text('PROXY')), null);
    assert.equal(proxySignatureOf(text('PROXY ')), 'v1');
    assert.equal(proxySignatureOf(signature.subarray(0, 11)), null);
    assert.equal(proxySignatureOf(signature), 'v2');
    assert.equal(proxySignatureOf(Buffer.alloc(0)), null);
  });

  test('never throws, whatever the bytes (a seeded sweep of random and mutated headers)', () => {
    let seed = 1;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const samples = [text('PROXY TCP4 192.0.2.7 10.0.0.5 51234 8443\r\n'), v2(0x21, 0x21, Buffer.concat([ipv6Block('2001:0db8:0000:0000:0000:0000:0000:0042', '2001:0db8:0000:0000:0000:0000:0000:0001', 1, 443), tlv(1, text('h2'))]))];
    for (let i = 0; i < 5000; i++) {
      const base = Buffer.from(samples[i % 2] as Buffer);
      for (let m = 0; m < 3; m++) base[Math.floor(random() * base.length)] = Math.floor(random() * 256);
      const cut = base.subarray(0, Math.floor(random() * (base.length + 1)));
      const r = parseProxyHeader(cut);
      assert.ok(['none', 'incomplete', 'header', 'malformed'].includes(r.kind));
      if (r.kind === 'header') assert.ok(r.length <= cut.length);
    }
  });
});
