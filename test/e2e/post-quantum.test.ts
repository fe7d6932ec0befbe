import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { request, type RequestOptions } from 'node:https';
import { connect as tlsConnect, type SecureVersion, type TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { groupName, runtimeGroups } from '../../src/config/index.js';
import { parseClientHello } from '../../src/edge/client-hello.js';
import { startCli } from '../helpers/cli-process.js';
import { run, sClient } from '../helpers/clients.js';
import { TestPki, type Ca } from '../helpers/pki.js';
import { startProxy, suiteScope, tempDir, type RunningProxy } from '../helpers/proxy.js';

/**
 * Post-quantum key exchange with real peers: the proxy offers X25519MLKEM768
 * where its runtime has ML-KEM (Node 24), and names the group of every
 * handshake. Node tells a TLS client which group it negotiated, not a server,
 * so the clients here are the witnesses: the group the proxy reports must be
 * the one each client saw.
 */

const withMlKem = runtimeGroups.postQuantum ? {} : { skip: `needs ML-KEM: this runtime (Node ${process.version}) bundles OpenSSL ${runtimeGroups.openssl}; the Node 24 run covers it` };
/** Node's names for the classical groups, as our profile spells them. */
const ourName: Record<string, string> = { prime256v1: 'P-256', secp384r1: 'P-384' };

interface Whoami {
  readonly requestId: string;
  readonly tls: { readonly version: string; readonly group: string | null };
}

describe('post-quantum key exchange and the negotiated group', () => {
  const scope = suiteScope();
  const pki = new TestPki();
  scope.after(() => pki.cleanup());
  let root: Ca;
  let p: RunningProxy;

  /** The first bytes of every connection the proxy opens to its upstream: its ClientHello. */
  const upstreamHellos: Buffer[] = [];

  before(async () => {
    root = pki.root('pq-root');
    const leaf = pki.leaf('pq', root, { dns: ['pq.test'] });
    const upstream = createServer((socket) =>
      socket.once('data', (bytes) => {
        upstreamHellos.push(bytes);
        socket.destroy();
      }),
    );
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    scope.after(() => upstream.close());
    p = await startProxy(
      scope,
      `listen: { https: "127.0.0.1:0" }
log: { access: ${join(tempDir(scope), 'access.log')} }
sites:
  - hosts: [pq.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes:
      - { path: /, upstream: "builtin:whoami" }
      - { path: /upstream/, upstream: "https://127.0.0.1:${(upstream.address() as AddressInfo).port}", upstreamTls: { ca: ${root.certFile}, serverName: pq.test } }
`,
    );
  });

  /** One request (to builtin:whoami unless `path` says otherwise) on a new connection from a Node client offering `ecdhCurve` (the runtime's default when absent): what the client saw and what the proxy answered. */
  async function ask(tls: { ecdhCurve?: string; maxVersion?: SecureVersion; path?: string } = {}, status = 200): Promise<{ clientGroup: string; whoami: Whoami }> {
    const options: RequestOptions = { host: '127.0.0.1', port: p.port, servername: 'pq.test', headers: { host: 'pq.test' }, ca: readFileSync(root.certFile), agent: false, ...tls };
    const req = request(options);
    req.end();
    const [res] = (await once(req, 'response')) as [IncomingMessage];
    const key = (res.socket as TLSSocket).getEphemeralKeyInfo() as { name?: string };
    let body = '';
    for await (const chunk of res) body += String(chunk);
    assert.equal(res.statusCode, status, body);
    return { clientGroup: ourName[key.name ?? ''] ?? String(key.name), whoami: JSON.parse(body) as Whoami };
  }

  test('a Node 24 client negotiates X25519MLKEM768 by default, and the event, access record, whoami and handshake metric name it', withMlKem, async () => {
    const seen = p.logs.length;
    const { clientGroup, whoami } = await ask();
    assert.equal(clientGroup, 'X25519MLKEM768');
    assert.equal(whoami.tls.group, 'X25519MLKEM768');
    const accepted = await p.waitForLog((l) => l.event === 'connection_accepted', { after: seen });
    assert.equal(accepted.group, 'X25519MLKEM768');
    assert.equal(accepted.postQuantum, true, 'its ClientHello carried a hybrid key share');
    assert.equal((await p.waitForAccess((r) => r.requestId === whoami.requestId)).group, 'X25519MLKEM768');
    assert.match(await p.proxy.metrics.registry.metrics(), /portcullis_handshakes_total\{version="TLSv1\.3",cipher="[A-Z0-9_]+",group="X25519MLKEM768",resumed="false"\} [1-9]/);
  });

  // each: the client's groups list (Node's ecdhCurve: the first group, or each one marked "*", gets a key share) → the group both sides must name
  const everywhere: readonly (readonly [string, SecureVersion, string])[] = [
    ['X25519:P-256', 'TLSv1.3', 'X25519'],
    ['P-256', 'TLSv1.3', 'P-256'],
    ['P-384:P-256', 'TLSv1.3', 'P-384'],
    ['P-256:X25519', 'TLSv1.3', 'P-256'],
    ['P-384:P-256:X25519', 'TLSv1.2', 'X25519'],
    ['P-384:P-256', 'TLSv1.2', 'P-256'],
  ];
  const withOpenSsl35: readonly (readonly [string, SecureVersion, string])[] = [
    // a client that lists the hybrid without a share for it is asked for one (HelloRetryRequest)
    ['X25519:X25519MLKEM768', 'TLSv1.3', 'X25519MLKEM768'],
    ['*X25519:*X25519MLKEM768', 'TLSv1.3', 'X25519MLKEM768'],
    // within the classical tuple a share the client sent wins, and among two, our order
    ['*P-384:*P-256', 'TLSv1.3', 'P-256'],
    ['X25519MLKEM768:P-256', 'TLSv1.2', 'P-256'],
  ];
  for (const [ecdhCurve, maxVersion, expected] of everywhere) {
    test(`names the group a client offering ${ecdhCurve} up to ${maxVersion} saw: ${expected}`, async () => {
      const { clientGroup, whoami } = await ask({ ecdhCurve, maxVersion });
      assert.equal(whoami.tls.version, maxVersion);
      assert.deepEqual([clientGroup, whoami.tls.group], [expected, expected]);
    });
  }
  for (const [ecdhCurve, maxVersion, expected] of withOpenSsl35) {
    test(`names the group a client offering ${ecdhCurve} up to ${maxVersion} saw: ${expected}`, withMlKem, async () => {
      const { clientGroup, whoami } = await ask({ ecdhCurve, maxVersion });
      assert.deepEqual([clientGroup, whoami.tls.group], [expected, expected]);
    });
  }

  test('offers X25519MLKEM768 to upstreams too, with a key share for it and one for X25519', withMlKem, async () => {
    await ask({ path: '/upstream/' }, 502);
    const r = parseClientHello(upstreamHellos.at(-1) as Buffer);
    assert.equal(r.kind, 'hello');
    const hello = (r as Extract<typeof r, { kind: 'hello' }>).hello;
    assert.deepEqual(hello.keyShares.map(groupName), ['X25519MLKEM768', 'X25519']);
    assert.deepEqual(hello.groups.map(groupName), ['X25519MLKEM768', 'X25519', 'P-256', 'P-384']);
  });

  test("gnutls-cli, which sends shares for P-256 then X25519, gets the one the runtime's OpenSSL picks, and the proxy names it", async () => {
    const seen = p.logs.length;
    const r = await run('gnutls-cli', ['--priority', 'NORMAL', '--x509cafile', root.certFile, '--sni-hostname', 'pq.test', '--verify-hostname', 'pq.test', '-p', String(p.port), '127.0.0.1'], '');
    assert.match(r.stdout, /Handshake was completed/, r.stderr);
    // OpenSSL ≥ 3.5 takes our preferred share within the tuple, 3.0 the client's first
    const expected = runtimeGroups.tuples ? 'X25519' : 'P-256';
    assert.match(r.stdout, new RegExp(`Description: \\(TLS1\\.3-X\\.509\\)-\\(ECDHE-${expected === 'X25519' ? 'X25519' : 'SECP256R1'}\\)`));
    assert.equal((await p.waitForLog((l) => l.event === 'connection_accepted', { after: seen })).group, expected);
  });

  test('openssl s_client on OpenSSL 3.0 (classical only) still connects, with X25519, or with P-256 when it offers only that', async () => {
    for (const [groups, expected, tempKey] of [
      ['X25519:P-256', 'X25519', /^X25519, 253 bits$/],
      ['P-256', 'P-256', /^ECDH, prime256v1, 256 bits$/],
    ] as const) {
      const seen = p.logs.length;
      const r = await sClient(p.port, ['-servername', 'pq.test', '-groups', groups]);
      assert.equal(r.protocol, 'TLSv1.3', r.stderr);
      assert.match(String(r.tempKey), tempKey);
      const accepted = await p.waitForLog((l) => l.event === 'connection_accepted', { after: seen });
      assert.deepEqual([accepted.group, accepted.postQuantum], [expected, false]);
    }
  });
});

describe('tls.postQuantum: required', withMlKem, () => {
  const scope = suiteScope();
  const pki = new TestPki();
  scope.after(() => pki.cleanup());
  let root: Ca;
  let p: RunningProxy;

  before(async () => {
    root = pki.root('pq-required-root');
    const leaf = pki.leaf('pq-required', root, { dns: ['pq.test'] });
    p = await startProxy(
      scope,
      `listen: { https: "127.0.0.1:0" }
tls: { profile: modern, postQuantum: required }
sites:
  - hosts: [pq.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami" }]
`,
    );
  });

  /** A handshake from a Node client offering `ecdhCurve` (the runtime's default when absent): the group it got, or the error it met. */
  async function handshake(ecdhCurve?: string): Promise<string> {
    const socket = tlsConnect({ host: '127.0.0.1', port: p.port, servername: 'pq.test', ca: readFileSync(root.certFile), ...(ecdhCurve ? { ecdhCurve } : {}) });
    try {
      await once(socket, 'secureConnect');
      return String((socket.getEphemeralKeyInfo() as { name?: string }).name);
    } catch (err) {
      return `refused: ${(err as Error & { code?: string }).code}`;
    } finally {
      socket.destroy();
    }
  }

  test('serves a client that offers X25519MLKEM768, and refuses one that offers only classical groups in the handshake, as no_shared_cipher', async () => {
    assert.equal(await handshake(), 'X25519MLKEM768');
    const seen = p.logs.length;
    assert.match(await handshake('X25519:P-256'), /^refused: ERR_SSL_.*HANDSHAKE_FAILURE/);
    const refused = await p.waitForLog((l) => l.event === 'handshake_failed' && l.reason === 'no_shared_cipher', { after: seen });
    assert.deepEqual([refused.detail, refused.postQuantum], ['ERR_SSL_NO_SUITABLE_KEY_SHARE', false]);
    const openssl30 = await sClient(p.port, ['-servername', 'pq.test']);
    assert.equal(openssl30.protocol, null, 'OpenSSL 3.0 has no ML-KEM');
  });
});

describe('the runtime at start', () => {
  test(
    runtimeGroups.postQuantum ? 'on a runtime with ML-KEM, start says nothing about post-quantum key exchange' : 'on a runtime without ML-KEM, start warns once, naming the runtime and what to run instead',
    async (t) => {
      const cli = startCli(t, ['start', '--listen', '127.0.0.1:0'], tempDir(t));
      await cli.waitFor(/"event":"listening"/);
      const warnings = `${cli.stdout}${cli.stderr}`.split('\n').filter((line) => line.includes('"event":"runtime_without_post_quantum"'));
      if (runtimeGroups.postQuantum) {
        assert.deepEqual(warnings, []);
        return;
      }
      assert.equal(warnings.length, 1);
      const warning = JSON.parse(warnings[0] as string) as { level: string; node: string; openssl: string; msg: string };
      assert.deepEqual([warning.node, warning.openssl], [process.version, runtimeGroups.openssl]);
      assert.match(warning.msg, /which has no ML-KEM: handshakes use classical key exchange only .*run Portcullis on Node 24 LTS/);
      if (process.version.startsWith('v20.')) assert.match(warning.msg, /Node 20 reached end of life in April 2026/);
    },
  );
});
