import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as tcpConnect, type AddressInfo } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { TestPki } from '../helpers/pki.js';
import { startProxy, suiteScope, type RunningProxy } from '../helpers/proxy.js';

const pki = new TestPki();
after(() => pki.cleanup());

/** curl's ClientHello, captured from the real client (test/fixtures/client-hellos). */
const hello = readFileSync(new URL('../fixtures/client-hellos/curl.bin', import.meta.url));
const handshake = hello.subarray(5);

function record(type: number, body: Buffer, version = 0x0301): Buffer {
  const head = Buffer.from([type, version >> 8, version & 0xff, body.length >> 8, body.length & 0xff]);
  return Buffer.concat([head, body]);
}

/** The ClientHello with one more extension (a GREASE type, which servers ignore) of `bytes` zero bytes, cut into records of at most 16 KiB. */
function helloWithPadding(bytes: number): Buffer {
  const body = Buffer.from(handshake.subarray(4));
  let at = 34;
  at += 1 + (body[at] as number); // session id
  at += 2 + body.readUInt16BE(at); // cipher suites
  at += 1 + (body[at] as number); // compression methods
  const padding = Buffer.concat([Buffer.from([0x1a, 0x1a, bytes >> 8, bytes & 0xff]), Buffer.alloc(bytes)]);
  const extended = Buffer.concat([body.subarray(0, at), Buffer.from([0, 0]), body.subarray(at + 2), padding]);
  extended.writeUInt16BE(body.readUInt16BE(at) + padding.length, at);
  const message = Buffer.concat([Buffer.from([1, extended.length >> 16, (extended.length >> 8) & 0xff, extended.length & 0xff]), extended]);
  const records: Buffer[] = [];
  for (let offset = 0; offset < message.length; offset += 16384) records.push(record(22, message.subarray(offset, offset + 16384)));
  return Buffer.concat(records);
}

/** What a server answers `bytes` with: a TLS alert's description, 'handshake' when it went on, or 'closed' when it just hung up. */
function answerTo(port: number, bytes: Buffer): Promise<number | 'handshake' | 'closed'> {
  return new Promise((resolve) => {
    const socket = tcpConnect(port, '127.0.0.1');
    let data = Buffer.alloc(0);
    socket.on('error', () => {});
    socket.on('data', (d: Buffer) => {
      data = Buffer.concat([data, d]);
      if (data.length >= 7) socket.destroy();
    });
    socket.on('close', () => resolve(data.length === 0 ? 'closed' : data[0] === 21 && data.length >= 7 ? (data[6] as number) : 'handshake'));
    socket.write(bytes);
  });
}

const alert = { unexpectedMessage: 10, recordOverflow: 22, illegalParameter: 47, decodeError: 50, unrecognizedName: 112 };

describe('a malformed ClientHello is answered with the alert OpenSSL (and so nginx) sends', () => {
  const scope = suiteScope();
  let p: RunningProxy;
  /** A bare Node TLS server: OpenSSL's own answers, to compare with. */
  let openssl: number;

  before(async () => {
    const root = pki.root('hello-alerts-root');
    const leaf = pki.leaf('api', root, { dns: ['api.test'] });
    p = await startProxy(
      scope,
      `
listen: { https: "127.0.0.1:0" }
sites:
  - hosts: [api.test]
    default: true
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
    );
    const server = createTlsServer({ cert: readFileSync(leaf.chainFile), key: readFileSync(leaf.keyFile) });
    server.on('tlsClientError', () => {});
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    scope.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
    openssl = (server.address() as AddressInfo).port;
  });

  const truncated = (() => {
    const message = Buffer.from(handshake);
    message.writeUIntBE(message.length - 4 - 10, 1, 3);
    return record(22, message.subarray(0, message.length - 10));
  })();
  const noCipherSuites = (() => {
    const body = Buffer.from(handshake.subarray(4));
    const at = 35 + (body[34] as number);
    const rest = Buffer.concat([body.subarray(0, at), Buffer.from([0, 0]), body.subarray(at + 2 + body.readUInt16BE(at))]);
    return record(22, Buffer.concat([Buffer.from([1, rest.length >> 16, (rest.length >> 8) & 0xff, rest.length & 0xff]), rest]));
  })();

  // OpenSSL 3.5 (Node 24) answers an empty cipher_suites with decode_error, which the vector's minimum
  // length of 2 in RFC 8446 §4.1.2 calls for; 3.0 (Node 20, and Debian's OpenSSL behind nginx) answers
  // illegal_parameter, and so does the edge.
  const opensslOnNoCipherSuites = process.versions.openssl.startsWith('3.0.') ? alert.illegalParameter : alert.decodeError;

  /** name, bytes, the edge's alert, and where OpenSSL versions differ: which one the edge answers as, and what this runtime's OpenSSL answers. */
  const cases: [string, Buffer, number, { as: string; openssl: number }?][] = [
    ['a handshake message that is not a ClientHello', record(22, Buffer.concat([Buffer.from([2]), handshake.subarray(1)])), alert.unexpectedMessage],
    ['an application-data record before the ClientHello is whole', Buffer.concat([record(22, handshake.subarray(0, 20)), record(23, Buffer.alloc(10))]), alert.unexpectedMessage],
    ['an application-data record first', record(23, Buffer.alloc(20)), alert.unexpectedMessage],
    ['an alert record first', record(21, Buffer.from([2, 40])), alert.unexpectedMessage],
    ['a record longer than TLS allows', Buffer.concat([Buffer.from([22, 3, 1, 0x48, 0x01]), Buffer.alloc(100)]), alert.recordOverflow],
    ['a ClientHello whose lengths do not add up', truncated, alert.decodeError],
    ['a ClientHello with no cipher suite', noCipherSuites, alert.illegalParameter, { as: 'as OpenSSL 3.0 answers (3.5: decode_error, 50)', openssl: opensslOnNoCipherSuites }],
  ];
  for (const [name, bytes, expected, reference] of cases) {
    test(`${name}: alert ${expected}, ${reference?.as ?? 'as OpenSSL answers'}`, async () => {
      assert.equal(await answerTo(openssl, bytes), reference?.openssl ?? expected, `OpenSSL ${process.versions.openssl} itself`);
      const before = p.logs.length;
      assert.equal(await answerTo(p.port, bytes), expected);
      await p.waitForLog((l) => l.reason === 'malformed_client_hello', { after: before });
    });
  }

  // OpenSSL sends nothing and waits for more; the edge closes at once
  for (const [name, bytes] of [
    ['an empty handshake record', record(22, Buffer.alloc(0))],
    ['a record version that is not TLS', record(22, handshake, 0x0200)],
  ] as const) {
    test(`${name}: closed without an alert`, async () => {
      assert.equal(await answerTo(p.port, bytes), 'closed');
    });
  }

  test('a ClientHello over 32 KiB (OpenSSL takes up to 128 KiB): illegal_parameter, what OpenSSL answers past its own limit', async () => {
    assert.equal(await answerTo(openssl, helloWithPadding(40_000)), 'handshake', 'OpenSSL takes a 40 KB ClientHello');
    assert.equal(await answerTo(p.port, helloWithPadding(40_000)), alert.illegalParameter);
    assert.equal(await answerTo(p.port, helloWithPadding(20_000)), 'handshake', 'a 20 KB ClientHello is served');
  });

  test('a server name that is no host name: unrecognized_name', async () => {
    const bytes = Buffer.from(hello);
    const at = bytes.indexOf(Buffer.from('api.example.test'));
    bytes[at + 3] = 0x20; // "api example.test"
    assert.equal(await answerTo(p.port, bytes), alert.unrecognizedName);
  });
});
