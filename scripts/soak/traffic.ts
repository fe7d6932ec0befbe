/**
 * The soak's traffic mix: one table of client kinds, each run by one or more
 * loops at a fixed interval (an operation that takes longer than its interval
 * delays the next one; loops never catch up in bursts, so the rate stays
 * moderate on a 2-core machine). Nominally about 80 good requests and 6 bad
 * clients a second; slow answers delay their loops, so about 50 are made.
 */
import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { garbage, handshakeRefused, mtlsRefused, mtlsRefusedH2, opensslTls1, pingFlood, plaintext, rapidReset, scanner, slowloris, type BadTarget } from './bad-clients.js';
import { attempt, H2Client, h1, next, paths, siteAgent, type Answer } from './good-clients.js';
import { apiHost, mtlsHost, type SoakPki } from './setup.js';

interface Kind {
  /** Label of the loops (good kinds name their own request kinds). */
  readonly name: string;
  readonly everyMs: number;
  readonly loops: number;
  /** One operation; `round` counts the loop's operations from 0. Never throws: outcomes go to the tally. */
  readonly run: (round: number) => Promise<void>;
}

export interface Traffic {
  /** Stops every loop after its current operation and closes every client connection. */
  stop(): Promise<void>;
}

export function startTraffic(target: BadTarget, pki: SoakPki): Traffic {
  const { tally } = target;
  const apiKeepAlive = siteAgent(target, apiHost, { keepAlive: true, alpn: true, counter: 'h1 keep-alive: TLS connections opened' });
  // keepAlive false: a new connection per request, which resumes the TLS session the agent cached
  const apiFresh = siteAgent(target, apiHost, { keepAlive: false, counter: 'h1 new connection: TLS connections opened' });
  const mtlsKeepAlive = siteAgent(target, mtlsHost, { keepAlive: true, cert: pki.goodClient, counter: 'mTLS h1 keep-alive: TLS connections opened' });
  const mtlsFresh = siteAgent(target, mtlsHost, { keepAlive: false, cert: pki.goodClient, counter: 'mTLS h1 new connection: TLS connections opened' });
  const h2Clients = [new H2Client(target, apiHost, 'h2 (api) #1'), new H2Client(target, apiHost, 'h2 (api) #2'), new H2Client(target, mtlsHost, 'mTLS h2', pki.goodClient)];
  const [h2a, h2b, h2m] = h2Clients as [H2Client, H2Client, H2Client];

  const fast = async (kind: string, request: (path: string) => Promise<Answer>) => {
    const p = paths.fast(next());
    await attempt(tally, kind, () => request(p.path), p.expected);
  };
  const slow = async (kind: string, request: (path: string) => Promise<Answer>) => {
    const p = paths.slow(next(), 1500);
    await attempt(tally, kind, () => request(p.path), p.expected);
  };
  const viaAgent = (agent: typeof apiKeepAlive, host: string) => (path: string) => h1(target, { host, path, agent });

  const kinds: readonly Kind[] = [
    // --- good clients ---
    {
      name: 'h1 keep-alive',
      everyMs: 50,
      loops: 2,
      run: (round) => (round % 40 === 39 ? slow('h1 keep-alive (slow 1.5 s)', viaAgent(apiKeepAlive, apiHost)) : fast('h1 keep-alive', viaAgent(apiKeepAlive, apiHost))),
    },
    { name: 'h1 new connection', everyMs: 250, loops: 1, run: () => fast('h1 new connection', viaAgent(apiFresh, apiHost)) },
    ...[h2a, h2b].map((client, n) => ({
      name: `h2 streams #${n + 1}`,
      everyMs: 400,
      loops: 1,
      // five concurrent streams on one session; one in four rounds includes a slow answer
      run: async (round: number) => {
        const streams = [0, 1, 2, 3, 4].map((s) => (s === 4 && round % 4 === 3 ? slow('h2 stream (slow 1.5 s)', (path) => client.request(path)) : fast('h2 stream', (path) => client.request(path))));
        await Promise.all(streams);
      },
    })),
    {
      name: 'uploads',
      everyMs: 1000,
      loops: 1,
      run: async (round) => {
        const u = paths.upload();
        await attempt(tally, 'h1 upload 256 KiB', () => h1(target, { host: apiHost, path: u.path, method: 'POST', body: u.body, agent: apiKeepAlive }), u.expected);
        if (round % 2 === 0) await attempt(tally, 'h2 upload 256 KiB', () => h2a.request(u.path, { method: 'POST', body: u.body }), u.expected);
      },
    },
    {
      name: 'downloads',
      everyMs: 1000,
      loops: 1,
      run: async (round) => {
        const d = paths.download();
        await attempt(tally, 'h1 download 1 MiB', () => h1(target, { host: apiHost, path: d.path, agent: apiKeepAlive }), d.expected);
        if (round % 2 === 1) await attempt(tally, 'h2 download 1 MiB', () => h2b.request(d.path), d.expected);
      },
    },
    {
      name: 'mTLS h1 keep-alive',
      everyMs: 500,
      loops: 1,
      run: () => {
        const w = paths.whoami(next());
        return attempt(tally, 'mTLS h1 keep-alive', () => h1(target, { host: mtlsHost, path: w.path, agent: mtlsKeepAlive }), w.expected);
      },
    },
    {
      name: 'mTLS h1 new connection',
      everyMs: 1000,
      loops: 1,
      run: () => {
        const w = paths.whoami(next());
        return attempt(tally, 'mTLS h1 new connection', () => h1(target, { host: mtlsHost, path: w.path, agent: mtlsFresh }), w.expected);
      },
    },
    {
      name: 'mTLS h2',
      everyMs: 1000,
      loops: 1,
      run: async () => {
        await Promise.all(
          [0, 1, 2].map(() => {
            const w = paths.whoami(next());
            return attempt(tally, 'mTLS h2 stream', () => h2m.request(w.path), w.expected);
          }),
        );
      },
    },
    // --- bad clients ---
    { name: 'mTLS no certificate', everyMs: 2000, loops: 1, run: () => mtlsRefused(target, 'mTLS without a certificate → 401 no_certificate', null, 401, 'no_certificate') },
    { name: 'mTLS no certificate h2', everyMs: 4000, loops: 1, run: () => mtlsRefusedH2(target, 'mTLS without a certificate, h2 → 401 + GOAWAY') },
    { name: 'mTLS foreign', everyMs: 2000, loops: 1, run: () => mtlsRefused(target, 'mTLS foreign CA → 403 unknown_ca', pki.foreignClient, 403, 'unknown_ca') },
    { name: 'mTLS expired', everyMs: 2000, loops: 1, run: () => mtlsRefused(target, 'mTLS expired → 403 expired', pki.expiredClient, 403, 'expired') },
    { name: 'plaintext', everyMs: 2000, loops: 1, run: () => plaintext(target, 'plain HTTP to the TLS port → 400, close') },
    { name: 'garbage', everyMs: 2000, loops: 1, run: () => garbage(target, 'garbage bytes → closed, no answer') },
    {
      name: 'TLS 1.0/1.1',
      everyMs: 3000,
      loops: 1,
      run: () => handshakeRefused(target, 'TLS 1.0/1.1-only (Node) → protocol_version alert', { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }, /ALERT_PROTOCOL_VERSION/),
    },
    { name: 'openssl -tls1', everyMs: 15_000, loops: 1, run: () => opensslTls1(target, 'TLS 1.0 (openssl s_client -tls1) → protocol_version alert') },
    {
      name: 'weak ciphers',
      everyMs: 3000,
      loops: 1,
      run: () => handshakeRefused(target, 'CBC / RSA key exchange only → handshake_failure alert', { maxVersion: 'TLSv1.2', ciphers: 'AES128-SHA:AES256-SHA:AES128-SHA256:AES128-GCM-SHA256' }, /ALERT_HANDSHAKE_FAILURE/),
    },
    { name: 'scanner', everyMs: 500, loops: 1, run: (round) => (round % 2 === 0 ? scanner(target, 'port scanner, connect + FIN → closed', 'fin') : scanner(target, 'port scanner, connect + RST', 'rst')) },
    { name: 'slowloris', everyMs: 1000, loops: 3, run: () => slowloris(target, 'slowloris (a header a second) → 408 request_timeout, close') },
    { name: 'rapid reset', everyMs: 10_000, loops: 1, run: () => rapidReset(target, 'h2 rapid reset → GOAWAY ENHANCE_YOUR_CALM, close') },
    { name: 'PING flood', everyMs: 10_000, loops: 1, run: () => pingFlood(target, 'h2 PING flood → GOAWAY ENHANCE_YOUR_CALM, close') },
  ];

  const stopping = new AbortController();
  // every loop waits on it
  setMaxListeners(100, stopping.signal);
  const loop = async (kind: Kind, offsetMs: number): Promise<void> => {
    // loops start spread over their interval, so kinds do not fire in step
    await sleep(offsetMs, undefined, { signal: stopping.signal }).catch(() => {});
    let due = Date.now();
    for (let round = 0; !stopping.signal.aborted; round++) {
      await kind.run(round);
      due += kind.everyMs;
      const wait = due - Date.now();
      if (wait <= 0) due = Date.now();
      else await sleep(wait, undefined, { signal: stopping.signal }).catch(() => {});
    }
  };
  const running = kinds.flatMap((k) => Array.from({ length: k.loops }, (_, n) => loop(k, Math.floor(((n + Math.random()) * k.everyMs) / k.loops))));

  return {
    async stop() {
      stopping.abort();
      await Promise.all(running);
      for (const agent of [apiKeepAlive, apiFresh, mtlsKeepAlive, mtlsFresh]) agent.destroy();
      for (const c of h2Clients) c.close();
    },
  };
}
