import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { constants as h2 } from 'node:http2';
import { connect as tcpConnect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { captureHello } from '../helpers/capture-hello.js';
import { curl, h2Client, resolveTo, tlsClient } from '../helpers/clients.js';
import { flag, frame, frameType, goawayCode, hpack, rawH2, requestBlock, rstCode, settingsAck, windowUpdate, type Frame, type RawH2 } from '../helpers/h2-raw.js';
import { TestPki, type Ca } from '../helpers/pki.js';
import { startProxy, suiteScope, type RunningProxy } from '../helpers/proxy.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { within } from '../helpers/wait.js';

/**
 * Resolves once the socket has closed, by a reset too: `once(socket, 'close')`
 * rejects on the ECONNRESET that may come first, which would skip the
 * clean-up after it and leave a trickle timer holding the file open.
 */
const closed = (socket: Socket): Promise<void> => new Promise((resolve) => socket.once('close', () => resolve()));

/**
 * Slow and abusive clients: each is cut off at a documented limit
 * (docs/security.md#limits), what it receives is exact, the proxy logs and
 * counts it, and a well-behaved client is served right after. The limits are
 * short here (1 s) so that every case ends within a few seconds.
 */

const pki = new TestPki();
after(() => pki.cleanup());

/** The limits of the proxy under test, in ms. */
const handshakeMs = 1_000;
const headersMs = 1_000;
const idleMs = 1_000;
const maxConcurrentStreams = 8;
/** RFC 9113 §6.9.1: the largest flow-control window. */
const maxWindow = 2 ** 31 - 1;
/**
 * Node 24's nghttp2 reports connection errors as the RFC names them and tells the proxy (a session 'error');
 * Node 20's answers most with INTERNAL_ERROR, and handles some (a bad table size update) without a word.
 */
const nodeMajor = Number(process.versions.node.split('.')[0]);
const runtimeReportsProtocolErrors = nodeMajor >= 24;

const since = (t0: number): number => Math.round(performance.now() - t0);

/** A raw HTTP/2 connection once the server's SETTINGS arrived; `ack` acknowledges them, which makes them bind nghttp2 (RFC 9113 §6.5.3). */
async function h2Session(t: { after(fn: () => unknown): void }, port: number, caFile: string, ack: boolean): Promise<RawH2> {
  const raw = await rawH2(t, port, 'api.test', caFile);
  await raw.frameWhere((f) => f.type === frameType.settings && (f.flags & flag.ack) === 0);
  if (ack) raw.write(settingsAck);
  await raw.frameWhere((f) => f.type === frameType.settings && (f.flags & flag.ack) !== 0);
  return raw;
}

/** HEADERS for a GET with END_STREAM: a complete request. */
const get = (stream: number, path: string): Buffer => frame(frameType.headers, flag.endHeaders | flag.endStream, stream, requestBlock('api.test', path));

/** The server's answer began with `:status: 200` (HPACK static entry 8, which nghttp2 always sends indexed). */
const isOk = (f: Frame): boolean => f.type === frameType.headers && f.payload[0] === 0x88;

/** Whether the frame ends the connection (GOAWAY) or `stream` (RST_STREAM), with its error code. */
const endOf = (f: Frame, stream: number): number | null => (f.type === frameType.goaway ? goawayCode(f) : f.type === frameType.rstStream && f.stream === stream ? rstCode(f) : null);

const codeName = (code: number): string => Object.entries(h2).find(([k, v]) => v === code && /^NGHTTP2_[A-Z_]+_ERROR$|^NGHTTP2_(REFUSED_STREAM|CANCEL|ENHANCE_YOUR_CALM|NO_ERROR)$/.test(k))?.[0] ?? String(code);
const describeFrames = (frames: readonly Frame[]): string =>
  frames
    .map((f) =>
      f.type === frameType.goaway ? `GOAWAY(${codeName(goawayCode(f))}, last stream ${f.payload.readUInt32BE(0)}${f.payload.length > 8 ? `, "${f.payload.subarray(8).toString()}"` : ''})` : f.type === frameType.rstStream ? `RST_STREAM(${f.stream}, ${codeName(rstCode(f))})` : `type ${f.type} on ${f.stream}`,
    )
    .join(', ');

/** A 4,038-byte dynamic-table entry (RFC 7541 §4.1: 6 + 4,000 + 32) and `references` indexed fields naming it: about `references` × 4 KB decoded. */
function hpackBomb(path: string, references: number): Buffer {
  return Buffer.concat([requestBlock('api.test', path), hpack.literalWithIndexing('x-bomb', 'b'.repeat(4000)), Buffer.alloc(references - 1, hpack.indexed(62)[0])]);
}

describe('slow and abusive clients are cut off at documented limits, and others are served meanwhile', () => {
  const scope = suiteScope();
  let root: Ca;
  let p: RunningProxy;
  let upstream: Upstream;
  /** A TLS 1.3 ClientHello for api.test, as openssl sends it. */
  let clientHello: Buffer;
  /** Requests the upstream has seen, by tag (the `tag` query parameter). */
  const seen = new Map<string, number>();

  const stillServes = async (version: '--http1.1' | '--http2' = '--http2') => {
    const r = await curl([version, ...resolveTo('api.test', p.port), '--cacert', root.certFile, '-o', '/dev/null', '-w', '%{http_code}', `https://api.test:${p.port}/ok`]);
    assert.equal(r.stdout, '200', `a well-behaved client was not served: ${JSON.stringify(r)}`);
  };
  const counted = async (metric: 'refusedConnections' | 'closedConnections', reason?: string) =>
    (await p.proxy.metrics[metric].get()).values.filter((v) => reason === undefined || v.labels.reason === reason).reduce((n, v) => n + v.value, 0);
  const requestsWithStatus = async (status: number) =>
    (await p.proxy.metrics.requests.get()).values.filter((v) => v.labels.status === String(status)).reduce((n, v) => n + v.value, 0);

  before(async () => {
    root = pki.root('abusive-root');
    const leaf = pki.leaf('api', root, { dns: ['api.test'] });
    upstream = await startUpstream(scope);
    upstream.server.on('request', (req: IncomingMessage) => {
      const tag = new URL(req.url ?? '/', 'http://x').searchParams.get('tag');
      if (tag) seen.set(tag, (seen.get(tag) ?? 0) + 1);
    });
    clientHello = await captureHello(['-servername', 'api.test', '-alpn', 'http/1.1', '-tls1_3']);
    p = await startProxy(
      scope,
      `
listen: { https: "127.0.0.1:0" }
timeouts: { handshake: ${handshakeMs}ms, headers: ${headersMs}ms, idle: ${idleMs}ms, request: 2s }
limits: { maxConcurrentStreams: ${maxConcurrentStreams} }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes: [{ path: /, upstream: "${upstream.origin}" }]
`,
    );
  });

  describe('slowloris and slow handshakes', () => {
    test('50 HTTP/1.1 clients trickling header bytes (slowloris) each get 408 request_timeout at timeouts.headers and are closed, while curl is served', async (t) => {
      const logsBefore = p.logs.length;
      const slow = Array.from({ length: 50 }, async () => {
        const socket = tlsClient(p.port, 'api.test', root.certFile);
        await once(socket, 'secureConnect');
        const t0 = performance.now();
        let answer = '';
        socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
        socket.write('GET /ok HTTP/1.1\r\nHost: api.test\r\nX-Slow: ');
        // one header byte every 100 ms: each resets any inactivity timer, never the headers deadline
        const trickle = setInterval(() => socket.writable && socket.write('a'), 100);
        socket.once('end', () => {
          clearInterval(trickle);
          socket.end();
        });
        await closed(socket);
        clearInterval(trickle);
        return { answer, ms: since(t0) };
      });
      await stillServes('--http1.1');
      const results = await Promise.all(slow);
      t.diagnostic(`closed ${Math.min(...results.map((r) => r.ms))}…${Math.max(...results.map((r) => r.ms))} ms after their handshakes`);
      for (const { answer, ms } of results) {
        assert.match(answer, /^HTTP\/1\.1 408 Request Timeout\r\n/);
        assert.match(answer, /\r\nconnection: close\r\n/i);
        assert.match(answer, /"reason":"request_timeout"/);
        // Node checks the deadline every timeouts.headers / 2
        assert.ok(ms >= headersMs / 2 && ms <= headersMs * 3, `closed ${ms} ms after the handshake; timeouts.headers is ${headersMs} ms`);
      }
      const refused = p.logs.slice(logsBefore).filter((l) => l.event === 'request_refused' && l.reason === 'request_timeout');
      assert.equal(refused.length, 50);
      assert.equal(new Set(refused.map((l) => l.requestId)).size, 50);
      await stillServes('--http1.1');
    });

    test('an HTTP/1.1 request cut off at timeouts.headers is counted in portcullis_requests_total with status 408', async () => {
      const before = await requestsWithStatus(408);
      const socket = tlsClient(p.port, 'api.test', root.certFile);
      await once(socket, 'secureConnect');
      let answer = '';
      socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
      socket.write('GET /ok HTTP/1.1\r\nHost: api.test\r\nX-Slow: a');
      await once(socket, 'close');
      assert.match(answer, /^HTTP\/1\.1 408 /);
      // a 408 answered by the proxy is a request answered, whether or not a route was matched
      assert.equal(await requestsWithStatus(408), before + 1, 'the 408 was answered and logged (request_refused) but not counted');
    });

    const handshakeStalls: readonly { name: string; stall: (socket: Socket, hello: Buffer) => () => void; before: 'ClientHello' | 'Finished' }[] = [
      {
        name: 'trickles its ClientHello one byte every 100 ms',
        before: 'ClientHello',
        stall: (socket, hello) => {
          let sent = 0;
          const timer = setInterval(() => socket.writable && sent < hello.length && socket.write(hello.subarray(sent, ++sent)), 100);
          return () => clearInterval(timer);
        },
      },
      {
        name: 'sends half its ClientHello, then nothing',
        before: 'ClientHello',
        stall: (socket, hello) => {
          socket.write(hello.subarray(0, hello.length >> 1));
          return () => {};
        },
      },
      {
        name: 'sends its whole ClientHello but never its Finished',
        before: 'Finished',
        stall: (socket, hello) => {
          socket.write(hello);
          return () => {};
        },
      },
    ];

    for (const { name, stall, before: missing } of handshakeStalls) {
      test(`10 connections whose client ${name} are closed at timeouts.handshake, logged and counted handshake_timeout, while curl is served`, async () => {
        const logsBefore = p.logs.length;
        const countedBefore = await counted('refusedConnections', 'handshake_timeout');
        const stalled = Array.from({ length: 10 }, async () => {
          const socket = tcpConnect(p.port, '127.0.0.1');
          socket.on('error', () => {});
          await once(socket, 'connect');
          const t0 = performance.now();
          let received = Buffer.alloc(0);
          socket.on('data', (d: Buffer) => (received = Buffer.concat([received, d])));
          const stop = stall(socket, clientHello);
          await closed(socket);
          stop();
          return { received, ms: since(t0) };
        });
        await stillServes();
        const results = await Promise.all(stalled);
        for (const { received } of results) {
          if (missing === 'ClientHello') assert.equal(received.length, 0, 'nothing is sent before a complete ClientHello');
          // the server's first flight (a handshake record: ServerHello), and no alert after it
          else assert.deepEqual([...received.subarray(0, 3)], [0x16, 0x03, 0x03]);
        }
        const logs = p.logs.slice(logsBefore);
        assert.deepEqual(
          {
            closedAfterMs: Math.max(...results.map((r) => r.ms)) <= handshakeMs + 1_500 && Math.min(...results.map((r) => r.ms)) >= handshakeMs * 0.8 ? 'about timeouts.handshake' : results.map((r) => r.ms),
            logged: logs.filter((l) => l.event === 'handshake_failed').map((l) => `${String(l.reason)} (${String(l.detail)})`),
            counted: (await counted('refusedConnections', 'handshake_timeout')) - countedBefore,
            // a TLS handshake that timed out is not an HTTP request
            loggedAsRequests: logs.filter((l) => l.event === 'request_refused').map((l) => `${String(l.reason)} (${String(l.detail)})`),
          },
          {
            closedAfterMs: 'about timeouts.handshake',
            logged: Array.from({ length: 10 }, () => `handshake_timeout (${missing === 'Finished' ? 'ERR_TLS_HANDSHAKE_TIMEOUT' : 'undefined'})`),
            counted: 10,
            loggedAsRequests: [],
          },
        );
      });
    }
  });

  describe('idle connections', () => {
    test('an idle HTTP/1.1 keep-alive connection, told Keep-Alive: timeout=1, is closed without another byte one second after timeouts.idle', async (t) => {
      const socket = tlsClient(p.port, 'api.test', root.certFile);
      await once(socket, 'secureConnect');
      let answer = '';
      let answeredAt = 0;
      let afterAnswer = 0;
      socket.on('data', (d: Buffer) => {
        if (answeredAt) afterAnswer += d.length;
        answer += d.toString('latin1');
        if (!answeredAt && answer.endsWith('\r\n0\r\n\r\n')) answeredAt = performance.now();
      });
      socket.write('GET /ok HTTP/1.1\r\nHost: api.test\r\n\r\n');
      await once(socket, 'close');
      assert.match(answer, /^HTTP\/1\.1 200 OK\r\n/);
      assert.match(answer, /\r\nKeep-Alive: timeout=1\r\n/i);
      assert.ok(answeredAt > 0, 'the chunked answer ended');
      assert.equal(afterAnswer, 0);
      const ms = since(answeredAt);
      t.diagnostic(`closed ${ms} ms after the response`);
      // Node's grace (keepAliveTimeoutBuffer on Node 24, built in on 20): the client, told the timeout, hangs up first
      assert.ok(ms >= idleMs + 800 && ms <= idleMs + 1_500, `closed ${ms} ms after the response; timeouts.idle is ${idleMs} ms`);
    });

    test('an idle HTTP/2 session gets GOAWAY NO_ERROR naming its last stream at timeouts.idle, then is closed', async (t) => {
      const raw = await h2Session(t, p.port, root.certFile, true);
      raw.write(get(1, '/ok'));
      await raw.frameWhere((f) => f.stream === 1 && f.type === frameType.data && (f.flags & flag.endStream) !== 0);
      const t0 = performance.now();
      const goaway = await raw.frameWhere((f) => f.type === frameType.goaway, idleMs * 3);
      const ms = since(t0);
      assert.deepEqual([goawayCode(goaway), goaway.payload.readUInt32BE(0)], [h2.NGHTTP2_NO_ERROR, 1]);
      assert.ok(ms >= idleMs * 0.8 && ms <= idleMs + 1_500, `GOAWAY ${ms} ms after the last answer; timeouts.idle is ${idleMs} ms`);
      await raw.closedByServer(2_000);
    });

    test('WINDOW_UPDATE frames every 300 ms do not keep an HTTP/2 session without requests open past timeouts.idle', async (t) => {
      const raw = await h2Session(t, p.port, root.certFile, true);
      const t0 = performance.now();
      const trickle = setInterval(() => raw.socket.writable && raw.write(windowUpdate(0, 1)), 300);
      t.after(() => clearInterval(trickle));
      const goaway = await raw.frameWhere((f) => f.type === frameType.goaway, idleMs * 4);
      const ms = since(t0);
      assert.equal(goawayCode(goaway), h2.NGHTTP2_NO_ERROR);
      assert.ok(ms <= idleMs + 1_500, `GOAWAY after ${ms} ms; timeouts.idle is ${idleMs} ms`);
      await raw.closedByServer(2_000);
    });

    // docs/configuration.md, timeouts.idle: a session with streams open is pinged and kept while its client answers
    test('an HTTP/2 request still waiting for its upstream when the session goes idle is answered to a client that answers PINGs', async (t) => {
      const session = h2Client(t, p.port, 'api.test', root.certFile);
      const goaways: number[] = [];
      session.on('goaway', (code: number) => goaways.push(code));
      let pings = 0;
      session.on('ping', () => pings++);
      const t0 = performance.now();
      // the upstream answers after 2.5 × timeouts.idle, well within timeouts.upstreamResponse (60 s)
      const req = session.request({ ':path': `/slow?ms=${idleMs * 2.5}&tag=idle-live` });
      req.on('error', () => {});
      const status = await within(
        Promise.race([once(req, 'response').then(([headers]) => (headers as Record<string, unknown>)[':status']), once(req, 'close').then(() => `stream closed after ${since(t0)} ms without an answer`)]),
        idleMs * 6,
        'the answer',
      );
      assert.equal(status, 200, `GOAWAY codes ${JSON.stringify(goaways)}, ${pings} PINGs from the proxy`);
      // asked whether it is alive, not told to go away: the session may go on serving
      assert.ok(pings >= 1, 'the proxy pinged the idle session');
      assert.deepEqual(goaways, []);
    });

    test('an HTTP/2 client that stops answering PINGs with a request in flight is disconnected after twice timeouts.idle, and its upstream request ends', async (t) => {
      const upstreamEnded = new Promise<void>((resolve) => {
        const onRequest = (req: IncomingMessage, res: ServerResponse) => {
          if (!req.url?.includes('tag=idle-dead')) return;
          upstream.server.off('request', onRequest);
          res.once('close', () => resolve());
        };
        upstream.server.on('request', onRequest);
      });
      const raw = await h2Session(t, p.port, root.certFile, true);
      const t0 = performance.now();
      raw.write(get(1, '/slow?ms=600000&tag=idle-dead'));
      const goaway = await raw.frameWhere((f) => f.type === frameType.goaway, idleMs * 3);
      assert.deepEqual([goawayCode(goaway), goaway.payload.readUInt32BE(0)], [h2.NGHTTP2_NO_ERROR, 1]);
      await raw.closedByServer(idleMs * 3);
      const ms = since(t0);
      assert.ok(ms >= idleMs * 1.6 && ms <= idleMs * 2 + 1_500, `closed after ${ms} ms; timeouts.idle is ${idleMs} ms`);
      await within(upstreamEnded, 5_000, 'the upstream request ending');
      await stillServes();
    });
  });

  describe('HTTP/2 flow control', () => {
    test('100,000 WINDOW_UPDATE frames of 1 byte, on the connection and on an open stream, get no answer and leave the connection serving', async (t) => {
      const raw = await h2Session(t, p.port, root.certFile, true);
      raw.write(get(1, '/slow?ms=300&tag=wu-flood'));
      const quietFrom = raw.frames.length;
      const cpu = process.cpuUsage();
      const t0 = performance.now();
      const batch = Buffer.concat(Array.from({ length: 1_000 }, (_, i) => windowUpdate(i % 2, 1)));
      for (let sent = 0; sent < 100_000 && !raw.socket.destroyed; sent += 1_000) if (!raw.write(batch)) await once(raw.socket, 'drain');
      // a PING after the flood: its ACK comes once the proxy has read every frame before it
      raw.write(frame(frameType.ping, 0, 0, Buffer.from('wu-flood')));
      await raw.frameWhere((f) => f.type === frameType.ping && (f.flags & flag.ack) !== 0 && f.payload.toString() === 'wu-flood', 10_000);
      const used = process.cpuUsage(cpu);
      t.diagnostic(`100,000 WINDOW_UPDATE frames (1.3 MB): ${since(t0)} ms, ${Math.round((used.user + used.system) / 1000)} ms CPU in this process (client and proxy)`);
      const answers = raw.frames.slice(quietFrom).filter((f) => f.stream !== 1 && f.type !== frameType.ping);
      assert.equal(describeFrames(answers), '', 'the proxy answered a WINDOW_UPDATE');
      assert.ok(isOk(await raw.frameWhere((f) => f.stream === 1 && f.type === frameType.headers)));
      raw.write(get(3, '/ok?tag=wu-flood-after'));
      assert.ok(isOk(await raw.frameWhere((f) => f.stream === 3 && f.type === frameType.headers)));
      assert.equal(seen.get('wu-flood-after'), 1);
      await stillServes();
    });

    for (const [what, stream] of [
      ['the connection window', 0],
      ['a stream window', 1],
    ] as const) {
      test(`a WINDOW_UPDATE pushing ${what} past 2^31-1 ends ${stream === 0 ? 'the connection with GOAWAY' : 'the stream (RST_STREAM) or the connection (GOAWAY)'} FLOW_CONTROL_ERROR; others are served`, async (t) => {
        const raw = await h2Session(t, p.port, root.certFile, true);
        if (stream) raw.write(get(stream, '/slow?ms=600000&tag=wu-overflow'));
        // the window starts at 65,535: this increment is allowed, the sum is not
        raw.write(windowUpdate(stream, maxWindow));
        const ending = await raw.frameWhere((f) => endOf(f, stream) !== null, 5_000);
        const expected = runtimeReportsProtocolErrors || stream !== 0 ? [h2.NGHTTP2_FLOW_CONTROL_ERROR] : [h2.NGHTTP2_FLOW_CONTROL_ERROR, h2.NGHTTP2_INTERNAL_ERROR];
        assert.ok(expected.includes(endOf(ending, stream) as number), describeFrames([ending]));
        if (ending.type === frameType.goaway) await raw.closedByServer(5_000);
        await stillServes();
      });
    }
  });

  describe('CONTINUATION floods (CVE-2024-27316 and the April 2024 advisories)', () => {
    /** HEADERS without END_HEADERS, then `pieces` more parts of `block` in CONTINUATION frames, the last with END_HEADERS. */
    const splitBlock = (stream: number, block: Buffer, pieces: number): Buffer[] => {
      const size = Math.ceil(block.length / (pieces + 1));
      return Array.from({ length: pieces + 1 }, (_, i) => {
        const part = block.subarray(i * size, (i + 1) * size);
        return i === 0 ? frame(frameType.headers, flag.endStream, stream, part) : frame(frameType.continuation, i === pieces ? flag.endHeaders : 0, stream, part);
      });
    };

    test('a request whose header block takes 8 CONTINUATION frames is answered', async (t) => {
      const raw = await h2Session(t, p.port, root.certFile, true);
      raw.write(Buffer.concat(splitBlock(1, requestBlock('api.test', '/ok?tag=continuation-8'), 8)));
      assert.ok(isOk(await raw.frameWhere((f) => f.stream === 1 || f.type === frameType.goaway)), describeFrames(raw.frames.slice(-1)));
    });

    const floods: readonly [string, Buffer][] = [
      ['empty CONTINUATION frames', Buffer.alloc(0)],
      ['16 KB CONTINUATION frames, one header field each', hpack.literal('x-c', 'c'.repeat(16_000))],
    ];
    for (const [name, payload] of floods) {
      test(`endless ${name} after a HEADERS without END_HEADERS end the connection after the 8th: GOAWAY, closed, nothing reaches the upstream; others are served`, async (t) => {
        const raw = await h2Session(t, p.port, root.certFile, true);
        raw.write(frame(frameType.headers, flag.endStream, 1, requestBlock('api.test', '/ok?tag=continuation-flood')));
        const batch = Buffer.concat(Array.from({ length: 10 }, () => frame(frameType.continuation, 0, 1, payload)));
        let sent = 0;
        while (sent < 100_000 && !raw.socket.destroyed && !raw.frames.some((f) => f.type === frameType.goaway)) {
          if (!raw.write(batch)) await Promise.race([once(raw.socket, 'drain'), once(raw.socket, 'close')]);
          else await new Promise(setImmediate);
          sent += 10;
        }
        const goaway = await raw.frameWhere((f) => f.type === frameType.goaway);
        t.diagnostic(`${describeFrames([goaway])} after the client wrote ${sent} CONTINUATION frames`);
        // nghttp2's own limit (8 CONTINUATION frames since 1.61), reported by Node as a session error
        assert.equal(goawayCode(goaway), h2.NGHTTP2_INTERNAL_ERROR);
        await raw.closedByServer(5_000);
        assert.equal(seen.get('continuation-flood') ?? 0, 0);
        await stillServes();
      });
    }
  });

  describe('HPACK bombs', () => {
    test('a header block referencing a 4 KB dynamic-table entry 5 times (20 KB decoded from 4 KB) is answered 431 headers_too_large and not forwarded', async (t) => {
      const raw = await h2Session(t, p.port, root.certFile, true);
      raw.write(frame(frameType.headers, flag.endHeaders | flag.endStream, 1, hpackBomb('/echo?tag=bomb-small', 5)));
      await raw.frameWhere((f) => f.stream === 1 && f.type === frameType.data);
      const body = JSON.parse(Buffer.concat(raw.frames.filter((f) => f.stream === 1 && f.type === frameType.data).map((f) => f.payload)).toString()) as { reason: string; detail: string };
      assert.equal(body.reason, 'headers_too_large');
      assert.match(body.detail, /^\d+ bytes; limits.maxHeaderBytes is 16384$/);
      assert.equal(seen.get('bomb-small') ?? 0, 0);
    });

    // docs/configuration.md, limits.maxHeaderBytes: HTTP/2 clients are told twice this value; beyond it Node resets the stream
    for (const ack of [true, false]) {
      test(`a header block decoding to 9.7 MB from 6 KB is reset with ENHANCE_YOUR_CALM, beyond twice limits.maxHeaderBytes, by a client that ${ack ? 'acknowledged' : 'never acknowledges'} SETTINGS`, async (t) => {
        const raw = await h2Session(t, p.port, root.certFile, ack);
        raw.write(frame(frameType.headers, flag.endHeaders | flag.endStream, 1, hpackBomb(`/echo?tag=bomb-${ack}`, 2400)));
        const answer = await raw.frameWhere((f) => f.stream === 1 || f.type === frameType.goaway);
        let detail = '';
        if (answer.type === frameType.headers) detail = Buffer.concat([(await raw.frameWhere((f) => f.stream === 1 && f.type === frameType.data)).payload]).toString();
        assert.equal(endOf(answer, 1), h2.NGHTTP2_ENHANCE_YOUR_CALM, `the proxy decoded the whole list and answered: ${detail || describeFrames([answer])}`);
        raw.write(get(3, '/ok'));
        assert.ok(isOk(await raw.frameWhere((f) => f.stream === 3 && f.type === frameType.headers)));
      });
    }

    test('a header block of 143,000 references (about 580 MB decoded) in HEADERS and 8 CONTINUATION frames is reset at once with ENHANCE_YOUR_CALM and never reaches the upstream', async (t) => {
      const raw = await h2Session(t, p.port, root.certFile, false);
      const first = hpackBomb('/echo?tag=bomb-huge', 16_384 - 4_100);
      const references = Buffer.alloc(16_384, hpack.indexed(62)[0]);
      raw.write(Buffer.concat([frame(frameType.headers, flag.endStream, 1, first), ...Array.from({ length: 8 }, (_, i) => frame(frameType.continuation, i === 7 ? flag.endHeaders : 0, 1, references))]));
      const cpu = process.cpuUsage();
      const t0 = performance.now();
      const answer = await raw.frameWhere((f) => f.stream === 1 || f.type === frameType.goaway, 5_000);
      const used = process.cpuUsage(cpu);
      t.diagnostic(`${describeFrames([answer])} after ${since(t0)} ms, ${Math.round((used.user + used.system) / 1000)} ms CPU`);
      assert.equal(endOf(answer, 1), h2.NGHTTP2_ENHANCE_YOUR_CALM);
      raw.write(get(3, '/ok'));
      // Node 24 goes on serving the connection; Node 20 (nghttp2 1.61) ends it after the reset, with GOAWAY INTERNAL_ERROR
      const next = await raw.frameWhere((f) => f.stream === 3 || f.type === frameType.goaway);
      t.diagnostic(`then: ${isOk(next) ? 'the next request on the connection is answered' : describeFrames([next])}`);
      if (next.type === frameType.goaway) assert.equal(goawayCode(next), h2.NGHTTP2_INTERNAL_ERROR);
      else assert.ok(isOk(next));
      assert.equal(seen.get('bomb-huge') ?? 0, 0);
      await stillServes();
    });

    test('a dynamic table size update above SETTINGS_HEADER_TABLE_SIZE (4,096) ends the connection with GOAWAY COMPRESSION_ERROR; others are served', async (t) => {
      const raw = await h2Session(t, p.port, root.certFile, true);
      raw.write(frame(frameType.headers, flag.endHeaders | flag.endStream, 1, Buffer.concat([hpack.tableSizeUpdate(1 << 30), requestBlock('api.test', '/ok?tag=table-size')])));
      const goaway = await raw.frameWhere((f) => f.type === frameType.goaway);
      assert.equal(goawayCode(goaway), h2.NGHTTP2_COMPRESSION_ERROR);
      // Node 24 closes at once; Node 20 stops reading and leaves the socket to the idle timer (docs: timeouts.idle)
      await raw.closedByServer(idleMs + 1_500);
      assert.equal(seen.get('table-size') ?? 0, 0);
      await stillServes();
    });
  });

  describe('concurrent streams', () => {
    /** Opens streams 1, 3, 5 … (`count` of them) in one write, each a slow request tagged `tag`. */
    const openStreams = (raw: RawH2, count: number, tag: string, first = 1) =>
      raw.write(Buffer.concat(Array.from({ length: count }, (_, i) => get(first + 2 * i, `/slow?ms=400&tag=${tag}`))));
    const answered = (raw: RawH2) => raw.frames.filter((f) => isOk(f)).map((f) => f.stream);
    const refused = (raw: RawH2) => raw.frames.filter((f) => f.type === frameType.rstStream && rstCode(f) === h2.NGHTTP2_REFUSED_STREAM).map((f) => f.stream);
    const firstStreams = Array.from({ length: maxConcurrentStreams }, (_, i) => 1 + 2 * i);

    test(`20 streams opened at once, before SETTINGS are acknowledged: the first ${maxConcurrentStreams} are answered, 12 refused with REFUSED_STREAM`, async (t) => {
      const raw = await h2Session(t, p.port, root.certFile, false);
      openStreams(raw, 20, 'streams-unacked');
      await raw.frameWhere(() => answered(raw).length + refused(raw).length >= 20);
      await raw.frameWhere((f) => f.stream === 1 + 2 * (maxConcurrentStreams - 1) && f.type === frameType.data && (f.flags & flag.endStream) !== 0);
      assert.deepEqual(answered(raw), firstStreams);
      assert.deepEqual(refused(raw), Array.from({ length: 12 }, (_, i) => 1 + 2 * (maxConcurrentStreams + i)));
      assert.equal(seen.get('streams-unacked'), maxConcurrentStreams);
      assert.equal(describeFrames(raw.frames.filter((f) => f.type === frameType.goaway)), '');
    });

    // RFC 9113 §5.1.2 calls this a stream error; nghttp2 (hence Node, whichever version) makes it a connection
    // error once the client has acknowledged the limit: the client broke a limit it agreed to. Only before
    // that acknowledgement are extra streams refused one by one (the test above and the next one).
    test(`one stream beyond limits.maxConcurrentStreams after SETTINGS were acknowledged ends the connection (GOAWAY PROTOCOL_ERROR; Node 20: a reset and a close), and it is logged`, async (t) => {
      const logsBefore = p.logs.length;
      const raw = await h2Session(t, p.port, root.certFile, true);
      openStreams(raw, maxConcurrentStreams + 1, 'streams-acked');
      const ending = await raw.frameWhere((f) => f.type === frameType.goaway || f.type === frameType.rstStream);
      await raw.closedByServer(5_000);
      if (runtimeReportsProtocolErrors) assert.equal(describeFrames([ending]).split(',')[0], 'GOAWAY(NGHTTP2_PROTOCOL_ERROR');
      else assert.match(describeFrames([ending]), /^(GOAWAY|RST_STREAM)\(/);
      await p.waitForLog((l) => l.event === 'connection_closed' && l.reason === 'http2_protocol_error', { after: logsBefore });
      await stillServes();
    });

    test(`200 streams beyond the limit are each refused with REFUSED_STREAM (Node's maxSessionRejectedStreams, 100, does not apply), and the ${maxConcurrentStreams} open ones are answered`, async (t) => {
      const raw = await h2Session(t, p.port, root.certFile, false);
      openStreams(raw, maxConcurrentStreams, 'streams-200');
      openStreams(raw, 200, 'streams-200-extra', 1 + 2 * maxConcurrentStreams);
      await raw.frameWhere(() => refused(raw).length >= 200);
      await raw.frameWhere((f) => f.stream === 1 + 2 * (maxConcurrentStreams - 1) && f.type === frameType.data && (f.flags & flag.endStream) !== 0);
      assert.deepEqual(answered(raw), firstStreams);
      assert.equal(seen.get('streams-200-extra') ?? 0, 0);
      assert.equal(describeFrames(raw.frames.filter((f) => f.type === frameType.goaway)), '');
    });

    test('a client that keeps opening streams beyond the limit is disconnected after 1,000 refused (Node\'s limit on invalid frames, no GOAWAY), logged; others are served', async (t) => {
      const logsBefore = p.logs.length;
      const raw = await h2Session(t, p.port, root.certFile, false);
      openStreams(raw, maxConcurrentStreams, 'streams-flood');
      let next = 1 + 2 * maxConcurrentStreams;
      while (next < 1 + 2 * (maxConcurrentStreams + 1_100) && !raw.socket.destroyed) {
        openStreams(raw, 100, 'streams-flood-extra', next);
        next += 200;
        await raw.frameWhere(() => refused(raw).length >= (next - 1) / 2 - maxConcurrentStreams, 2_000).catch(() => {});
      }
      await raw.closedByServer(5_000);
      assert.ok(refused(raw).length >= 1_000 && refused(raw).length < 1_100, `${refused(raw).length} streams refused`);
      assert.equal(seen.get('streams-flood-extra') ?? 0, 0);
      const line = await p.waitForLog((l) => l.event === 'connection_closed' && l.reason === 'http2_protocol_error', { after: logsBefore });
      assert.match(String(line.detail), /invalid frames|Too many/i);
      await stillServes();
    });
  });

  describe('every HTTP/2 connection ended for abuse is logged and counted', () => {
    const tableSizeAbuse: [string, boolean, (raw: RawH2) => void] = ['a dynamic table size update above SETTINGS_HEADER_TABLE_SIZE', true, (raw) => raw.write(frame(frameType.headers, flag.endHeaders | flag.endStream, 1, Buffer.concat([hpack.tableSizeUpdate(65_536), requestBlock('api.test', '/ok')])))];
    const abuses: readonly [string, boolean, (raw: RawH2) => void][] = [
      ['a CONTINUATION flood', true, (raw) => raw.write(Buffer.concat([frame(frameType.headers, 0, 1, requestBlock('api.test', '/ok')), ...Array.from({ length: 20 }, () => frame(frameType.continuation, 0, 1))]))],
      // Node 20 handles this one inside nghttp2 and tells nobody: its socket is closed at timeouts.idle at the latest
      ...(runtimeReportsProtocolErrors ? [tableSizeAbuse] : []),
      ['a connection window past 2^31-1', true, (raw) => raw.write(windowUpdate(0, maxWindow))],
      ['a stream beyond limits.maxConcurrentStreams after SETTINGS were acknowledged', true, (raw) => raw.write(Buffer.concat(Array.from({ length: maxConcurrentStreams + 1 }, (_, i) => get(1 + 2 * i, '/slow?ms=400'))))],
      ['1,100 streams refused', false, (raw) => raw.write(Buffer.concat(Array.from({ length: maxConcurrentStreams + 1_100 }, (_, i) => get(1 + 2 * i, '/slow?ms=400'))))],
    ];
    for (const [name, ack, abuse] of abuses) {
      test(`${name}: the connection is closed, logged (connection_closed) and counted (portcullis_connections_closed_total)`, async (t) => {
        const logsBefore = p.logs.length;
        const before = await counted('closedConnections');
        const raw = await h2Session(t, p.port, root.certFile, ack);
        abuse(raw);
        await raw.closedByServer(5_000);
        const line = await p.waitForLog((l) => l.event === 'connection_closed', { after: logsBefore, timeoutMs: 500 }).catch(() => null);
        const seenByClient = describeFrames(raw.frames.filter((f) => f.type === frameType.goaway || f.type === frameType.rstStream).slice(-1)) || 'a TCP close';
        assert.ok(line, `the client got ${seenByClient}; the proxy logged nothing of it`);
        assert.equal(line.alpn, 'h2');
        assert.equal(await counted('closedConnections'), before + 1);
      });
    }
  });
});

describe('limits.maxHeaderBytes at its largest (1 MiB) over HTTP/2', () => {
  const scope = suiteScope();
  let root: Ca;
  let p: RunningProxy;

  before(async () => {
    root = pki.root('abusive-big-root');
    const leaf = pki.leaf('api', root, { dns: ['api.test'] });
    p = await startProxy(
      scope,
      `
listen: { https: "127.0.0.1:0" }
limits: { maxHeaderBytes: 1048576 }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
    );
  });

  // curl and Node's client refuse to send more than 64 KB of headers over HTTP/2; a client that sends up to the
  // advertised SETTINGS_MAX_HEADER_LIST_SIZE (2 MiB here) splits the list into 16 KB frames, as this one does.
  // nghttp2 takes a header block in at most 9 frames (HEADERS and 8 CONTINUATION: the CONTINUATION flood guard),
  // whatever the configured limit: about 147 KB encoded (docs/configuration.md, limits.maxHeaderBytes)
  test('a 120 KB header list, within the configured 1 MiB, sent in HEADERS and 8 CONTINUATION frames is answered', async (t) => {
    const raw = await h2Session(t, p.port, root.certFile, true);
    raw.write(bigHeaders(8));
    const answer = await raw.frameWhere((f) => f.stream === 1 || f.type === frameType.goaway);
    assert.ok(isOk(answer), `the client got ${describeFrames([answer])}`);
  });

  test('a header list in more than 9 frames ends the connection whatever limits.maxHeaderBytes says', async (t) => {
    const raw = await h2Session(t, p.port, root.certFile, true);
    raw.write(bigHeaders(9));
    await raw.frameWhere((f) => f.type === frameType.goaway);
    await raw.closedByServer(5_000);
  });

  /** HEADERS, then `continuations` CONTINUATION frames of 15 KB each. */
  const bigHeaders = (continuations: number): Buffer =>
    Buffer.concat([
      frame(frameType.headers, flag.endStream, 1, requestBlock('api.test', '/')),
      ...Array.from({ length: continuations }, (_, i) => frame(frameType.continuation, i === continuations - 1 ? flag.endHeaders : 0, 1, hpack.literal(`x-c${i}`, 'c'.repeat(15_000)))),
    ]);
});
