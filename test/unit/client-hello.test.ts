import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { highestOfferedVersion, parseClientHello, versionName } from '../../src/edge/client-hello.js';
import { ja3, ja4 } from '../../src/edge/fingerprints.js';
import { captureHello } from '../helpers/capture-hello.js';

/** Re-frames a single-record ClientHello into records of `size` handshake bytes each. */
function reframe(hello: Buffer, size: number): Buffer {
  const body = hello.subarray(5, 5 + hello.readUInt16BE(3));
  const records: Buffer[] = [];
  for (let i = 0; i < body.length; i += size) {
    const part = body.subarray(i, i + size);
    const header = Buffer.from([0x16, 0x03, 0x01, 0, 0]);
    header.writeUInt16BE(part.length, 3);
    records.push(header, part);
  }
  return Buffer.concat(records);
}

describe('ClientHello parser', () => {
  let hello: Buffer;
  let tls12Only: Buffer;
  before(async () => {
    hello = await captureHello(['-servername', 'API.Test', '-alpn', 'h2,http/1.1']);
    tls12Only = await captureHello(['-tls1_2', '-noservername']);
  });

  test('reads server name, ALPN, versions, groups and signature algorithms from an openssl ClientHello', () => {
    const r = parseClientHello(hello);
    assert.equal(r.kind, 'hello');
    if (r.kind !== 'hello') return;
    assert.equal(r.hello.serverName, 'api.test');
    assert.deepEqual(r.hello.alpn, ['h2', 'http/1.1']);
    assert.ok(r.hello.supportedVersions.includes(0x0304));
    assert.equal(versionName(highestOfferedVersion(r.hello)), 'TLSv1.3');
    assert.ok(r.hello.groups.includes(0x001d), 'x25519 offered');
    assert.ok(r.hello.signatureAlgorithms.includes(0x0403), 'ecdsa_secp256r1_sha256 offered');
    assert.ok(r.hello.cipherSuites.includes(0x1301));
    assert.equal(r.hello.extensions[0] !== undefined, true);
  });

  test('sees the highest version of a TLS 1.2-only client and the absence of SNI', () => {
    const r = parseClientHello(tls12Only);
    assert.equal(r.kind, 'hello');
    if (r.kind !== 'hello') return;
    assert.equal(r.hello.serverName, null);
    assert.equal(versionName(highestOfferedVersion(r.hello)), 'TLSv1.2');
  });

  test('reassembles a ClientHello split across TLS records', () => {
    for (const size of [1, 7, 64, 300]) {
      const r = parseClientHello(reframe(hello, size));
      assert.equal(r.kind, 'hello', `records of ${size} bytes`);
      if (r.kind === 'hello') assert.equal(r.hello.serverName, 'api.test');
    }
  });

  test('asks for more bytes on every strict prefix, as when split across TCP segments', () => {
    const framed = reframe(hello, 100);
    for (let n = 0; n < framed.length; n++) assert.equal(parseClientHello(framed.subarray(0, n)).kind, 'incomplete', `prefix of ${n} bytes`);
  });

  test('classifies plain HTTP, garbage and oversized input without throwing', () => {
    assert.deepEqual(parseClientHello(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')), { kind: 'not_tls', looksLikeHttp: true });
    assert.deepEqual(parseClientHello(Buffer.from([0x00, 0x01, 0x02])), { kind: 'not_tls', looksLikeHttp: false });
    assert.equal(parseClientHello(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0, 0, 0])).kind, 'malformed');
    const huge = Buffer.from([0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x01, 0x00, 0x00]);
    assert.equal(parseClientHello(huge).kind, 'too_large');
  });

  test('never throws on thousands of random and mutated inputs, and fingerprints whatever parses', () => {
    // the edge fingerprints every ClientHello that parses: that must not throw either
    const parseAndFingerprint = (bytes: Buffer) => {
      const r = parseClientHello(bytes);
      if (r.kind === 'hello') {
        assert.match(ja4(r.hello), /^t(13|12|11|10|s3|s2|00)[di]\d{4}[0-9A-Za-z]{2}_[0-9a-f]{12}_[0-9a-f]{12}$/);
        assert.match(ja3(r.hello).hash, /^[0-9a-f]{32}$/);
        fingerprinted++;
      }
    };
    let fingerprinted = 0;
    let seed = 42;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let i = 0; i < 5000; i++) {
      const input = Buffer.from(hello);
      if (i % 3 === 2) {
        // one byte changed past the headers, nothing cut: many of these still parse, with odd values
        input[9 + (rand() % (input.length - 9))] = rand() & 0xff;
        assert.doesNotThrow(() => parseAndFingerprint(input));
      } else if (i % 2 === 0) {
        for (let k = 0; k < 1 + (rand() % 8); k++) input[rand() % input.length] = rand() & 0xff;
        assert.doesNotThrow(() => parseAndFingerprint(input.subarray(0, rand() % (input.length + 1))));
      } else {
        const random = Buffer.alloc(rand() % 600);
        for (let k = 0; k < random.length; k++) random[k] = rand() & 0xff;
        if (random.length > 0 && i % 4 === 1) random[0] = 0x16;
        assert.doesNotThrow(() => parseAndFingerprint(random));
      }
    }
    assert.ok(fingerprinted > 50, `${fingerprinted} mutated ClientHellos still parsed and were fingerprinted`);
  });
});
