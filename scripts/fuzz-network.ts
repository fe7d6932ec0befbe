/**
 * The network part of scripts/fuzz.ts: starts the proxy in-process (no
 * node:test) with a site served from a test certificate and the builtin
 * whoami upstream, throws random and mutated input at it in batches, and
 * after every batch checks that a good HTTP/1.1 client and a good HTTP/2
 * client are still served. An error-level log line of the proxy (a request
 * that failed inside it) or an uncaught exception is a finding.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as h2connect, constants as h2 } from 'node:http2';
import { request as httpsRequest } from 'node:https';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import fc from 'fast-check';
import { pino } from 'pino';
import { loadConfigFile } from '../src/config/index.js';
import { startPortcullis, type Portcullis } from '../src/instance/index.js';
import { encodeHello, helloSpecArb } from '../test/properties/client-hello-encoder.js';
import { firstFlightArb, mutatedHelloArb } from '../test/properties/client-hello.js';
import { TestPki } from '../test/helpers/pki.js';

export interface NetworkProxy {
  readonly port: number;
  readonly caFile: string;
  readonly host: string;
  /** Error-level log lines since the last call. */
  takeErrors(): string[];
  close(): Promise<void>;
}

export async function startFuzzProxy(): Promise<NetworkProxy> {
  const pki = new TestPki();
  const root = pki.root('fuzz-net-root');
  const leaf = pki.leaf('fuzz-net', root, { dns: ['fuzz.test'] });
  const dir = mkdtempSync(join(tmpdir(), 'pcl-net-fuzz-'));
  const file = join(dir, 'portcullis.yaml');
  writeFileSync(
    file,
    `dataDir: state
listen: { https: "127.0.0.1:0" }
timeouts: { handshake: 2s, headers: 2s, idle: 2s, request: 5s, send: 2s }
log: { access: "off" }
sites:
  - hosts: [fuzz.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes:
      - { path: /, upstream: "builtin:whoami" }
      - { path: /keys/, upstream: "builtin:whoami", apiKeys: required }
`,
  );
  const errors: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (/"level":(50|60)/.test(line)) errors.push(line);
      done();
    },
  });
  const proxy: Portcullis = await startPortcullis(loadConfigFile(file), pino({ level: 'warn' }, sink), { accessLog: null });
  return {
    port: proxy.address.port,
    caFile: root.certFile,
    host: 'fuzz.test',
    takeErrors: () => errors.splice(0),
    close: async () => {
      await proxy.close();
      pki.cleanup();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** How long a connection may stay quiet after the last bytes either way before the fuzzer hangs up. */
const quietMs = 150;

/**
 * Runs one connection: writes `chunks` once `ready` fires, then waits until
 * the server closes or nothing has moved for quietMs (at most `ms` in all).
 * An even number of chunks half-closes after the last one, so both the
 * "client went away" and the "client went quiet" paths are taken.
 */
function drive(socket: Socket | TLSSocket, ready: string, chunks: readonly Buffer[], ms: number): Promise<{ answer: Buffer; ready: boolean; closedByServer: boolean }> {
  return new Promise((resolve) => {
    const answer: Buffer[] = [];
    let isReady = false;
    let closedByServer = false;
    const hardStop = setTimeout(() => socket.destroy(), ms);
    let quiet: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(quiet);
      quiet = setTimeout(() => socket.destroy(), quietMs);
    };
    socket.on('data', (d: Buffer) => {
      answer.push(d);
      arm();
    });
    socket.on('end', () => (closedByServer = true));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(hardStop);
      clearTimeout(quiet);
      resolve({ answer: Buffer.concat(answer), ready: isReady, closedByServer });
    });
    socket.on(ready, async () => {
      isReady = true;
      for (const c of chunks) {
        if (socket.destroyed) return;
        socket.write(c);
        await new Promise((r) => setImmediate(r));
      }
      if (chunks.length % 2 === 0 && !socket.destroyed) socket.end();
      arm();
    });
  });
}

/** Raw TCP to the TLS port (the edge's ClientHello peek comes first). */
const rawExchange = (port: number, chunks: readonly Buffer[], ms: number) => drive(netConnect(port, '127.0.0.1'), 'connect', chunks, ms);

/** A verified TLS connection with one ALPN protocol; `chunks` go after the handshake. */
const tlsExchange = (proxy: NetworkProxy, alpn: 'http/1.1' | 'h2', chunks: readonly Buffer[], ms: number) =>
  drive(tlsConnect({ port: proxy.port, host: '127.0.0.1', servername: proxy.host, ca: readFileSync(proxy.caFile), ALPNProtocols: [alpn] }), 'secureConnect', chunks, ms);

/** A good HTTP/1.1 client and a good HTTP/2 client are served (200 from whoami). */
export async function goodClientsServed(proxy: NetworkProxy): Promise<string | null> {
  const ca = readFileSync(proxy.caFile);
  const h1 = await new Promise<string | null>((resolve) => {
    const req = httpsRequest({ host: '127.0.0.1', port: proxy.port, servername: proxy.host, ca, path: '/after-batch', headers: { host: proxy.host }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200 ? null : `HTTP/1.1 answered ${res.statusCode}`));
    });
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.on('error', (err) => resolve(`HTTP/1.1 failed: ${err.message}`));
    req.end();
  });
  if (h1) return h1;
  return new Promise<string | null>((resolve) => {
    const session = h2connect(`https://${proxy.host}:${proxy.port}`, { ca, servername: proxy.host, host: '127.0.0.1', createConnection: () => tlsConnect({ port: proxy.port, host: '127.0.0.1', servername: proxy.host, ca, ALPNProtocols: ['h2'] }) });
    session.on('error', (err) => resolve(`HTTP/2 failed: ${err.message}`));
    const timer = setTimeout(() => {
      session.destroy();
      resolve('HTTP/2 timed out');
    }, 5000);
    const stream = session.request({ [h2.HTTP2_HEADER_PATH]: '/after-batch' });
    stream.on('response', (headers) => {
      stream.resume();
      stream.on('end', () => {
        clearTimeout(timer);
        session.close();
        resolve(headers[':status'] === 200 ? null : `HTTP/2 answered ${headers[':status']}`);
      });
    });
    stream.on('error', (err) => {
      clearTimeout(timer);
      session.destroy();
      resolve(`HTTP/2 stream failed: ${err.message}`);
    });
    stream.end();
  });
}

// ---- inputs -----------------------------------------------------------------

const split = (bytes: Buffer, cuts: readonly number[]) => {
  const points = [...new Set([0, ...cuts.map((c) => c % (bytes.length + 1))])].sort((a, b) => a - b);
  return points.map((p, i) => bytes.subarray(p, points[i + 1] ?? bytes.length)).filter((b) => b.length > 0);
};

/** First flights for the TLS port: random bytes, broken ClientHellos, good ClientHellos followed by garbage records. */
export const helloFlightArb = fc
  .tuple(
    fc.oneof(
      firstFlightArb,
      mutatedHelloArb,
      fc.tuple(helloSpecArb.map(encodeHello), fc.uint8Array({ maxLength: 200 })).map(([h, junk]) => Buffer.concat([h, Buffer.from(junk)])),
      helloSpecArb.map((spec) => encodeHello({ ...spec, extensions: [...(spec.extensions ?? []).filter((e) => e.type !== 0), { type: 0, names: [{ nameType: 0, name: Buffer.from('fuzz.test') }] }] })),
    ),
    fc.array(fc.nat(), { maxLength: 4 }),
  )
  .map(([bytes, cuts]) => split(bytes, cuts));

const token = fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}$/);
/** Fields a real client sends, with values the pipeline acts on. */
const plainField = fc.oneof(
  fc.constantFrom(
    'Accept: */*',
    'User-Agent: fuzz',
    'Connection: keep-alive',
    'Connection: close',
    'Connection: x-request-id, host, x-forwarded-for',
    'Authorization: Bearer pck_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
    'Authorization: Bearer nope',
    'X-Api-Key: pck_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
    'X-Forwarded-For: 1.2.3.4',
    'X-Forwarded-Host: evil.test',
    'X-Client-Cert: forged',
    'X_Client_Cert: forged',
    'Forwarded: for=1.2.3.4',
    'Cookie: a=1',
    'Content-Type: application/json',
    'Expect: 100-continue',
    'TE: trailers',
    'Upgrade: websocket',
    'Upgrade: h2c',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version: 13',
  ),
  fc.tuple(token, fc.stringMatching(/^[\x20-\x7e]{0,30}$/)).map(([n, v]) => `${n}: ${v.trim()}`),
);
/** Fields that make the request odd or hostile: smuggling shapes, duplicates, bad bytes, huge values. */
const oddField = fc.constantFrom(
  'Host: other.test',
  'Host: fuzz.test',
  'Host: fuzz.test:1',
  'Host: [::1]',
  'Host:',
  'Transfer-Encoding: chunked',
  'Transfer-Encoding: gzip, chunked',
  'Transfer-Encoding : chunked',
  'Transfer-Encoding: chunked\r\nTransfer-Encoding: identity',
  'Content-Length: 5',
  'Content-Length: 5, 5',
  'Content-Length: -1',
  'Content-Length: 18446744073709551616',
  'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA',
  ' obs-fold',
  'X-Nul: a\u0000b',
  'X-Big: ' + 'a'.repeat(20_000),
  'Bad Name: x',
);
const method = fc.oneof({ weight: 6, arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'HEAD', 'DELETE', 'OPTIONS', 'PATCH') }, { weight: 1, arbitrary: fc.constantFrom('CONNECT', 'TRACE', 'PRI', 'get', 'G ET', 'PROPFIND') });
const target = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('/', '/keys/x', '/keys/', '/a/b?c=d', '/a/../keys/x', '/%2e%2e/keys/', '/a%2fb', '/a%5cb', '/..;/keys/', '//keys/x', '/%61') },
  { weight: 1, arbitrary: fc.constantFrom('http://fuzz.test/', 'https://other.test/x', '*', 'fuzz.test:443', '/a\\b', '/?q=1#f', `/${'x'.repeat(9000)}`) },
  { weight: 1, arbitrary: fc.stringMatching(/^\/[\x21-\x7e]{0,30}$/) },
);
const version = fc.oneof({ weight: 8, arbitrary: fc.constant('HTTP/1.1') }, { weight: 1, arbitrary: fc.constantFrom('HTTP/1.0', 'HTTP/0.9', 'HTTP/2.0', 'HTTP/1.2', 'HTTP/1.1 x', '') });
const body = fc.oneof(
  { weight: 3, arbitrary: fc.constant('') },
  { weight: 1, arbitrary: fc.constantFrom('Content-Length: 5\r\n\r\nhello', 'Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n', 'Transfer-Encoding: chunked\r\n\r\nzzz\r\n', 'Content-Length: 0\r\n\r\n', 'Content-Length: 3\r\n\r\nhello', 'Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: fuzz.test\r\n\r\n') },
);
/** One HTTP/1.1 request: mostly well-formed (Host first, CRLF) with fields the pipeline acts on, sometimes one odd part. */
const http1Request = fc
  .record({ method, target, version, fields: fc.array(plainField, { maxLength: 6 }), odd: fc.oneof({ weight: 3, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: oddField }), eol: fc.oneof({ weight: 9, arbitrary: fc.constant('\r\n') }, { weight: 1, arbitrary: fc.constantFrom('\n', '\r') }), body })
  .map((r) => {
    const lines = [`${r.method} ${r.target} ${r.version}`, 'Host: fuzz.test', ...r.fields, ...(r.odd ? [r.odd] : [])];
    // a body brings its own framing field and the blank line
    return r.body ? `${lines.join(r.eol)}${r.eol}${r.body}` : `${lines.join(r.eol)}${r.eol}${r.eol}`;
  });
/** HTTP/1.1 connections: one to three requests (pipelined), mutated now and then, or random bytes. */
export const http1FlightArb = fc
  .tuple(
    fc.oneof(
      { weight: 6, arbitrary: fc.array(http1Request, { minLength: 1, maxLength: 3 }).map((rs) => Buffer.from(rs.join(''), 'latin1')) },
      { weight: 1, arbitrary: fc.tuple(http1Request, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([r, at, v]) => { const b = Buffer.from(r, 'latin1'); b[at % b.length] = v; return b; }) },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 500 }).map((b) => Buffer.from(b)) },
    ),
    fc.array(fc.nat(), { maxLength: 4 }),
  )
  .map(([bytes, cuts]) => split(bytes, cuts));

// HTTP/2 frames (RFC 9113 §4.1): 24-bit length, type, flags, reserved bit + 31-bit stream id, payload.
const frame = (type: number, flags: number, stream: number, payload: Buffer) => {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream >>> 0, 5);
  return Buffer.concat([head, payload]);
};
const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
/** HPACK (RFC 7541): indexed static fields, and literals without indexing (no Huffman). */
const hpackLiteral = (name: string, value: string) => Buffer.concat([Buffer.from([0x00, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);
const getHeaders = (path: string, extra: Buffer = Buffer.alloc(0)) => Buffer.concat([Buffer.from([0x82, 0x87]), hpackLiteral(':path', path), hpackLiteral(':authority', 'fuzz.test'), extra]);

const h2Frame = fc.oneof(
  { weight: 3, arbitrary: fc.record({ type: fc.integer({ min: 0, max: 10 }), flags: fc.integer({ min: 0, max: 255 }), stream: fc.oneof(fc.constantFrom(0, 1, 3, 5, 2, 0x7fffffff, 0x80000001), fc.nat()), payload: fc.uint8Array({ maxLength: 64 }) }).map((f) => frame(f.type, f.flags, f.stream, Buffer.from(f.payload))) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('/', '/keys/x', '/%2e%2e/', '//x', '*', ''), fc.constantFrom(0x4, 0x5, 0x1, 0x0, 0x24), fc.constantFrom(1, 3, 2, 0)).map(([p, flags, s]) => frame(0x1, flags, s, getHeaders(p))) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(1, 3), fc.uint8Array({ maxLength: 40 }), fc.constantFrom(0, 1)).map(([s, d, end]) => frame(0x0, end, s, Buffer.from(d))) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x8), fc.integer({ min: 0, max: 0xffffffff })).map(([id, v]) => { const p = Buffer.alloc(6); p.writeUInt16BE(id, 0); p.writeUInt32BE(v, 2); return frame(0x4, 0, 0, p); }) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(0, 1, 3), fc.integer({ min: 0, max: 0x7fffffff })).map(([s, inc]) => { const p = Buffer.alloc(4); p.writeUInt32BE(inc, 0); return frame(0x8, 0, s, p); }) },
  { weight: 1, arbitrary: fc.constantFrom(frame(0x3, 0, 1, Buffer.from([0, 0, 0, 8])), frame(0x7, 0, 0, Buffer.alloc(8)), frame(0x6, 0, 0, Buffer.alloc(8)), frame(0x9, 0x4, 1, Buffer.from([0x82])), frame(0x1, 0x4, 1, Buffer.concat([Buffer.from([0x82, 0x87, 0x84]), hpackLiteral(':authority', 'fuzz.test'), hpackLiteral('connection', 'close'), hpackLiteral('te', 'trailers, x')]))) },
);
/** HTTP/2: the preface and SETTINGS (each sometimes missing or broken), usually a good GET, then random and near-valid frames. */
export const http2FlightArb = fc
  .record({
    preface: fc.oneof({ weight: 9, arbitrary: fc.constant(preface) }, { weight: 1, arbitrary: fc.uint8Array({ maxLength: 24 }).map((b) => Buffer.from(b)) }),
    settings: fc.oneof({ weight: 9, arbitrary: fc.constant(frame(0x4, 0, 0, Buffer.alloc(0))) }, { weight: 1, arbitrary: fc.constant(Buffer.alloc(0)) }),
    first: fc.option(fc.tuple(fc.constantFrom('/', '/keys/x', '/a?b'), fc.constantFrom(0x5, 0x4)).map(([p, flags]) => frame(0x1, flags, 1, getHeaders(p))), { freq: 3, nil: Buffer.alloc(0) }),
    frames: fc.array(h2Frame, { maxLength: 10 }),
    cuts: fc.array(fc.nat(), { maxLength: 3 }),
  })
  .map((f) => split(Buffer.concat([f.preface, f.settings, f.first, ...f.frames]), f.cuts));

export interface NetworkTarget {
  readonly target: string;
  readonly title: string;
  /** One connection's input. */
  readonly input: fc.Arbitrary<Buffer[]>;
  send(proxy: NetworkProxy, chunks: readonly Buffer[]): Promise<unknown>;
}

export const networkTargets: readonly NetworkTarget[] = [
  { target: 'net-hello', title: 'TLS port: random and mutated ClientHellos', input: helloFlightArb, send: (p, c) => rawExchange(p.port, c, 1500) },
  { target: 'net-http1', title: 'HTTP/1.1 after a TLS handshake: odd, smuggling-shaped and random requests', input: http1FlightArb, send: (p, c) => tlsExchange(p, 'http/1.1', c, 2500) },
  { target: 'net-http2', title: 'HTTP/2 after a TLS handshake: random and near-valid frames', input: http2FlightArb, send: (p, c) => tlsExchange(p, 'h2', c, 2500) },
];
