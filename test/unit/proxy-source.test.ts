import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect as h2connect, createSecureServer, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session } from 'node:http2';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { adoptSource, ProxyHeaderRead, type HeaderRead } from '../../src/edge/proxy-source.js';
import { captureHello } from '../helpers/capture-hello.js';
import { TestPki } from '../helpers/pki.js';

/**
 * What the listeners rely on to carry a PROXY header's client past the raw
 * socket: Node internals (a TLS socket asks the handle under it for its
 * peer), so checked here on every runtime the tests run on, with the TLS and
 * HTTP servers Portcullis uses, fed the way the HTTPS listener feeds them
 * (`emit('connection')` with a paused socket).
 */

const pki = new TestPki();
after(() => pki.cleanup());

interface Seen {
  raw: string | undefined;
  tls: string | undefined;
  tlsPort: number | undefined;
  request: string | undefined;
  requestPort: number | undefined;
  session: string | undefined;
  read: HeaderRead | null;
}

describe('a believed PROXY header makes its client the peer of every socket above the raw one', () => {
  let port: number;
  let caFile: string;
  const seen: Seen[] = [];
  const servers: { close(): unknown }[] = [];

  before(async () => {
    const root = pki.root('relay-root');
    const leaf = pki.leaf('relay', root, { dns: ['relay.test'] });
    caFile = root.certFile;
    const tls = createSecureServer({ key: readFileSync(leaf.keyFile), cert: readFileSync(leaf.chainFile), allowHTTP1: true });
    tls.on('secureConnection', (socket: TLSSocket) => {
      const entry = seen.at(-1) as Seen;
      entry.tls = socket.remoteAddress;
      entry.tlsPort = socket.remotePort;
    });
    tls.on('request', (req: Http2ServerRequest, res: Http2ServerResponse) => {
      const entry = seen.at(-1) as Seen;
      entry.request = req.socket.remoteAddress;
      entry.requestPort = req.socket.remotePort;
      entry.session = req.httpVersionMajor === 2 ? (req.stream.session as ServerHttp2Session).socket.remoteAddress : undefined;
      res.end('ok');
    });
    tls.on('tlsClientError', () => {});
    const front = createServer({ pauseOnConnect: true }, (socket: Socket) => {
      socket.on('error', () => {});
      const entry: Seen = { raw: undefined, tls: undefined, tlsPort: undefined, request: undefined, requestPort: undefined, session: undefined, read: null };
      seen.push(entry);
      new ProxyHeaderRead(socket, true, 5_000, (read) => {
        entry.read = read;
        if (read.kind !== 'header') return void socket.destroy();
        if (read.source) assert.equal(adoptSource(socket, read.source), true);
        entry.raw = socket.remoteAddress;
        tls.emit('connection', socket);
      });
    });
    front.listen(0, '127.0.0.1');
    await once(front, 'listening');
    port = (front.address() as AddressInfo).port;
    servers.push(front, tls);
  });
  after(() => {
    for (const s of servers) s.close();
  });

  /** A TCP connection that sends `header` (in pieces of `piece` bytes), then runs TLS over the same socket. */
  async function relayed(header: Buffer, alpn: 'http/1.1' | 'h2', piece = header.length): Promise<TLSSocket> {
    const socket = connect({ port, host: '127.0.0.1', noDelay: true });
    await once(socket, 'connect');
    for (let i = 0; i < header.length; i += piece) {
      const written = socket.write(header.subarray(i, i + piece));
      if (!written) await once(socket, 'drain');
    }
    const secure = tlsConnect({ socket, servername: 'relay.test', ca: readFileSync(caFile), ALPNProtocols: [alpn] });
    secure.on('error', () => {});
    await once(secure, 'secureConnect');
    return secure;
  }

  /** One HTTP/1.1 request over the TLS socket; resolves with the answer once the server closed. */
  async function get(secure: TLSSocket): Promise<string> {
    secure.write('GET / HTTP/1.1\r\nHost: relay.test\r\nConnection: close\r\n\r\n');
    const chunks: Buffer[] = [];
    secure.on('data', (d: Buffer) => chunks.push(d));
    await once(secure, 'close');
    return Buffer.concat(chunks).toString();
  }

  test('HTTP/1.1 over TLS: the raw socket, the TLS socket and the request all see the v1 header\'s client', async () => {
    const secure = await relayed(Buffer.from('PROXY TCP4 203.0.113.7 127.0.0.1 4242 443\r\n'), 'http/1.1');
    assert.match(await get(secure), /^HTTP\/1\.1 200/);
    const entry = seen.at(-1) as Seen;
    assert.deepEqual(entry, { raw: '203.0.113.7', tls: '203.0.113.7', tlsPort: 4242, request: '203.0.113.7', requestPort: 4242, session: undefined, read: entry.read });
  });

  test('HTTP/2 over TLS: the request and its session socket see the v2 header\'s IPv6 client, sent a byte at a time', async () => {
    const block = Buffer.alloc(36);
    Buffer.from('20010db8000000000000000000000007', 'hex').copy(block, 0);
    Buffer.from('00000000000000000000000000000001', 'hex').copy(block, 16);
    block.writeUInt16BE(5555, 32);
    block.writeUInt16BE(443, 34);
    const header = Buffer.concat([Buffer.from('0d0a0d0a000d0a515549540a2121', 'hex'), Buffer.from([0, 36]), block]);
    const secure = await relayed(header, 'h2', 1);
    const session = h2connect('https://relay.test', { createConnection: () => secure });
    session.on('error', () => {});
    const stream = session.request({ ':path': '/' });
    stream.resume();
    const [headers] = (await once(stream, 'response')) as [Record<string, unknown>];
    assert.equal(headers[':status'], 200);
    await once(stream, 'end');
    session.destroy();
    const entry = seen.at(-1) as Seen;
    assert.equal(entry.raw, '2001:db8::7');
    assert.equal(entry.tls, '2001:db8::7');
    assert.equal(entry.request, '2001:db8::7');
    assert.equal(entry.requestPort, 5555);
    assert.equal(entry.session, '2001:db8::7');
  });

  test('a v2 LOCAL header (a health check) leaves the balancer\'s own address in place', async () => {
    const secure = await relayed(Buffer.from('0d0a0d0a000d0a515549540a20000000', 'hex'), 'http/1.1');
    assert.match(await get(secure), /^HTTP\/1\.1 200/);
    const entry = seen.at(-1) as Seen;
    assert.deepEqual(entry.read, { kind: 'header', source: null });
    assert.equal(entry.raw, '127.0.0.1');
    assert.equal(entry.tls, '127.0.0.1');
    assert.equal(entry.request, '127.0.0.1');
  });

  test('the ClientHello sent in the same segment as the header reaches TLS whole: the server answers with its ServerHello', async () => {
    const hello = await captureHello(['-servername', 'relay.test']);
    const socket = connect({ port, host: '127.0.0.1' });
    socket.on('error', () => {});
    await once(socket, 'connect');
    socket.write(Buffer.concat([Buffer.from('PROXY TCP4 198.51.100.1 127.0.0.1 1 443\r\n'), hello]));
    const [first] = (await once(socket, 'data')) as [Buffer];
    socket.destroy();
    assert.equal(first[0], 0x16, 'a TLS handshake record');
    assert.equal(first[5], 0x02, 'holding a ServerHello');
    assert.equal((seen.at(-1) as Seen).raw, '198.51.100.1');
  });

  test('bytes that are no header, a broken header and a silent peer are reported with a precise reason', async () => {
    const outcome = async (bytes: Buffer | null): Promise<HeaderRead | null> => {
      const socket = connect({ port, host: '127.0.0.1' });
      socket.on('error', () => {});
      await once(socket, 'connect');
      if (bytes) socket.write(bytes);
      else socket.end();
      await once(socket, 'close');
      return (seen.at(-1) as Seen).read;
    };
    assert.deepEqual(await outcome(Buffer.from('GET / HTTP/1.1\r\n\r\n')), { kind: 'refused', reason: 'proxy_protocol_missing', why: 'the connection did not start with a PROXY header, and listen.proxyProtocol lists its source' });
    const broken = await outcome(Buffer.from('PROXY TCP4 1.2.3 127.0.0.1 1 2\r\n'));
    assert.equal(broken?.kind === 'refused' && broken.reason, 'proxy_protocol_malformed');
    assert.deepEqual(await outcome(null), { kind: 'closed' }, 'a TCP health check that connects and hangs up is no refusal');
  });
});
