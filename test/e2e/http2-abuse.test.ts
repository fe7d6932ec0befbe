import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { constants as h2 } from 'node:http2';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { curl, resolveTo } from '../helpers/clients.js';
import { flag, frame, frameType, goawayCode, rawH2, requestBlock, sendRapidResets } from '../helpers/h2-raw.js';
import { TestPki, type Ca } from '../helpers/pki.js';
import { startProxy, suiteScope, tempDir, type RunningProxy } from '../helpers/proxy.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { within } from '../helpers/wait.js';

const pki = new TestPki();
after(() => pki.cleanup());

describe('HTTP/2 clients that abandon, reset or flood', () => {
  const scope = suiteScope();
  let root: Ca;
  let p: RunningProxy;
  let upstream: Upstream;
  let accessLog: string;
  /** Requests the upstream has seen, by tag (the `tag` query parameter). */
  const seen = new Map<string, number>();

  const accessLines = async () => {
    await p.flushAccessLog();
    return readFileSync(accessLog, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  };
  const stillServes = async () => {
    const r = await curl(['--http2', ...resolveTo('api.test', p.port), '--cacert', root.certFile, '-o', '/dev/null', '-w', '%{http_code}', `https://api.test:${p.port}/ok`]);
    assert.equal(r.stdout, '200');
  };
  const closedFor = async (reason: string) => (await p.proxy.metrics.closedConnections.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;

  before(async () => {
    root = pki.root('h2-abuse-root');
    const leaf = pki.leaf('api', root, { dns: ['api.test'] });
    upstream = await startUpstream(scope);
    upstream.server.on('request', (req: IncomingMessage) => {
      const tag = new URL(req.url ?? '/', 'http://x').searchParams.get('tag');
      if (tag) seen.set(tag, (seen.get(tag) ?? 0) + 1);
    });
    const dir = tempDir(scope);
    accessLog = join(dir, 'access.log');
    p = await startProxy(
      scope,
      `
listen: { https: "127.0.0.1:0" }
timeouts: { idle: 2s }
log: { access: ${accessLog} }
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes: [{ path: /, upstream: "${upstream.origin}" }]
`,
      dir,
    );
  });

  test('requests that HTTP/2 clients abandon (curl --max-time) stop at the upstream too', async () => {
    const closes: Promise<unknown>[] = [];
    const arrived = new Promise<void>((resolve) => {
      const onRequest = (req: IncomingMessage, res: ServerResponse) => {
        if (!req.url?.includes('tag=abandoned')) return;
        closes.push(once(res, 'close'));
        if (closes.length === 5) {
          upstream.server.off('request', onRequest);
          resolve();
        }
      };
      upstream.server.on('request', onRequest);
    });
    const url = `https://api.test:${p.port}/slow?ms=600000&tag=abandoned`;
    const runs = await Promise.all([1, 2, 3, 4, 5].map(() => curl(['--http2', '--max-time', '1', ...resolveTo('api.test', p.port), '--cacert', root.certFile, url])));
    assert.deepEqual(
      runs.map((r) => r.code),
      [28, 28, 28, 28, 28],
    );
    await within(arrived, 10_000, 'five requests at the upstream');
    await within(Promise.all(closes), 10_000, 'the upstream requests ending');
    const lines = (await accessLines()).filter((l) => String(l.path).includes('tag=abandoned'));
    assert.equal(lines.length, 5);
    for (const l of lines) assert.deepEqual([l.status, l.completed, l.reason], [0, false, 'client_closed']);
  });

  test('a rapid-reset client gets GOAWAY ENHANCE_YOUR_CALM, its resets do not reach the upstream, and others are served', async (t) => {
    const raw = await rawH2(t, p.port, 'api.test', root.certFile);
    const goaway = raw.frameWhere((f) => f.type === frameType.goaway, 15_000);
    const block = requestBlock('api.test', '/slow?ms=600000&tag=rapid');
    await sendRapidResets(raw, block);
    assert.equal(goawayCode(await goaway), h2.NGHTTP2_ENHANCE_YOUR_CALM);
    await raw.closedByServer(10_000);
    await stillServes();
    // the budget lets 100 resets through at most; reset in the packet that opened them, none start
    assert.equal(seen.get('rapid') ?? 0, 0);
    const event = await p.waitForLog((l) => l.event === 'connection_closed' && l.reason === 'rapid_reset');
    assert.equal(event.alpn, 'h2');
    assert.equal(await closedFor('rapid_reset'), 1);
    const lines = (await accessLines()).filter((l) => String(l.path).includes('tag=rapid'));
    assert.ok(lines.length > 100, `${lines.length} access-log lines`);
    for (const l of lines) assert.deepEqual([l.status, l.completed, l.reason], [0, false, 'client_closed']);
  });

  // h2spec's connection-error cases (4.2/2, 5.1/5, 6.1/2 …): Node 20 and 22 stop reading such a connection and
  // never see the client's FIN; with a stream still open, the socket used to stay in CLOSE-WAIT for good
  test('a connection error while a request body is still open closes the TCP connection', async (t) => {
    const raw = await rawH2(t, p.port, 'api.test', root.certFile);
    raw.write(frame(frameType.headers, flag.endHeaders, 1, requestBlock('api.test', '/sink?rate=1000000', 'POST')));
    raw.write(frame(frameType.data, 0, 1, Buffer.alloc(100)));
    await within(
      new Promise<void>((resolve) => {
        const onRequest = (req: IncomingMessage) => {
          if (!req.url?.startsWith('/sink')) return;
          upstream.server.off('request', onRequest);
          resolve();
        };
        upstream.server.on('request', onRequest);
      }),
      10_000,
      'the upload reaching the upstream',
    );
    raw.write(frame(frameType.rstStream, 0, 1, Buffer.alloc(3)));
    // as h2spec does: read the server's GOAWAY, then hang up
    assert.equal(goawayCode(await raw.frameWhere((f) => f.type === frameType.goaway)), h2.NGHTTP2_FRAME_SIZE_ERROR);
    raw.socket.end();
    await raw.closedByServer(15_000);
  });

  for (const [name, flood] of [
    ['PING', frame(frameType.ping, 0, 0, Buffer.alloc(8))],
    ['SETTINGS', frame(frameType.settings, 0, 0)],
  ] as const) {
    test(`a ${name} flood gets GOAWAY ENHANCE_YOUR_CALM and is closed; others are served`, async (t) => {
      const before = await closedFor('control_frame_flood');
      const raw = await rawH2(t, p.port, 'api.test', root.certFile);
      const goaway = raw.frameWhere((f) => f.type === frameType.goaway);
      const batch = Buffer.concat(Array.from({ length: 100 }, () => flood));
      const acks = () => raw.frames.filter((f) => f.type === flood[3] && (f.flags & flag.ack) !== 0).length;
      // a client that reads every answer before sending more: nghttp2's own limit on unread answers never triggers
      for (let i = 1; i <= 100 && !raw.socket.destroyed; i++) {
        raw.write(batch);
        await raw.frameWhere(() => acks() >= i * 100 || raw.frames.some((f) => f.type === frameType.goaway)).catch(() => {});
      }
      assert.equal(goawayCode(await goaway), h2.NGHTTP2_ENHANCE_YOUR_CALM);
      await raw.closedByServer(10_000);
      await stillServes();
      assert.equal(await closedFor('control_frame_flood'), before + 1);
    });
  }
});
