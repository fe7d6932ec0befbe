/**
 * The soak's well-behaved clients. Each operation records every request it
 * makes in the tally: ok only with the expected status, the expected body
 * (byte count and hash for the large ones) and the site's HSTS header.
 * Every client verifies the proxy's certificate against the soak's server CA.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { connect as h2connect, constants as h2, type ClientHttp2Session, type IncomingHttpHeaders as H2Headers } from 'node:http2';
import { Agent, request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import type { Leaf } from '../../test/helpers/pki.js';
import type { Tally } from './tally.js';
import { downloadBytes, downloadSha256, uploadAnswer, uploadBody } from './upstream.js';

/** A good request that has not answered within this long counts as failed (a hang). */
export const goodTimeoutMs = 30_000;
/** HTTP/2 sessions are replaced after this long, so that session set-up and teardown are part of the soak. */
const sessionLifetimeMs = 60_000;

export interface Target {
  readonly port: number;
  readonly ca: Buffer;
  readonly tally: Tally;
}

export interface Answer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders | H2Headers;
  readonly length: number;
  readonly sha256: string;
  /** The first 512 bytes as text, for messages. */
  readonly text: string;
}

/** What a request should get: a short text body, a large one known by length and hash, or a body with a known start that holds a given string. */
export type Expected = { readonly text: string } | { readonly length: number; readonly sha256: string } | { readonly prefix: string; readonly includes: string };

interface Collector {
  add(chunk: Buffer): void;
  finish(status: number, headers: IncomingHttpHeaders | H2Headers): Answer;
}

function collector(): Collector {
  const hash = createHash('sha256');
  let length = 0;
  const head: Buffer[] = [];
  let headBytes = 0;
  return {
    add(chunk) {
      hash.update(chunk);
      length += chunk.length;
      if (headBytes < 512) {
        head.push(chunk.subarray(0, 512 - headBytes));
        headBytes += Math.min(chunk.length, 512 - headBytes);
      }
    },
    finish: (status, headers) => ({ status, headers, length, sha256: hash.digest('hex'), text: Buffer.concat(head).toString('utf8') }),
  };
}

/** Throws a message naming what was wrong with `answer`. */
export function check(answer: Answer, expected: Expected): void {
  const what = `status ${answer.status}, ${answer.length} bytes "${answer.text.slice(0, 200)}"`;
  if (answer.status !== 200) throw new Error(`expected 200, got ${what}`);
  if (!answer.headers['strict-transport-security']) throw new Error(`no Strict-Transport-Security header on ${what}`);
  if ('text' in expected) {
    if (answer.text !== expected.text || answer.length !== Buffer.byteLength(expected.text)) throw new Error(`expected body "${expected.text}", got ${what}`);
  } else if ('prefix' in expected) {
    if (!answer.text.startsWith(expected.prefix) || !answer.text.includes(expected.includes)) throw new Error(`expected a body starting "${expected.prefix}" with ${expected.includes}, got ${what}`);
  } else if (answer.length !== expected.length || answer.sha256 !== expected.sha256) {
    throw new Error(`expected ${expected.length} bytes with sha256 ${expected.sha256.slice(0, 12)}…, got ${answer.length} bytes with sha256 ${answer.sha256.slice(0, 12)}…`);
  }
}

export interface H1Options {
  readonly host: string;
  readonly path: string;
  readonly method?: 'GET' | 'POST';
  readonly body?: Buffer;
  /** Without an agent: a fresh connection with these TLS options (client certificate or none). */
  readonly agent: Agent | { readonly cert: Leaf | null };
  readonly timeoutMs?: number;
}

/** One HTTP/1.1 request to the proxy on 127.0.0.1; rejects on a network error or after `timeoutMs`. */
export function h1(target: Target, opts: H1Options): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const tls = opts.agent instanceof Agent ? { agent: opts.agent } : { agent: false as const, ca: target.ca, servername: opts.host, ...(opts.agent.cert ? { cert: certPem(opts.agent.cert), key: keyPem(opts.agent.cert) } : {}) };
    const req = httpsRequest({ host: '127.0.0.1', port: target.port, method: opts.method ?? 'GET', path: opts.path, headers: { host: opts.host }, ...tls }, (res) => {
      const body = collector();
      res.on('data', (c: Buffer) => body.add(c));
      res.on('end', () => {
        clearTimeout(timer);
        resolve(body.finish(res.statusCode ?? 0, res.headers));
      });
      res.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    const timer = setTimeout(() => req.destroy(new Error(`no complete answer within ${opts.timeoutMs ?? goodTimeoutMs} ms`)), opts.timeoutMs ?? goodTimeoutMs);
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.end(opts.body);
  });
}

const pems = new Map<string, Buffer>();
const readPem = (file: string): Buffer => {
  let pem = pems.get(file);
  if (!pem) pems.set(file, (pem = readFileSync(file)));
  return pem;
};
export const certPem = (leaf: Leaf): Buffer => readPem(leaf.chainFile);
export const keyPem = (leaf: Leaf): Buffer => readPem(leaf.keyFile);

/** A keep-alive (or not) HTTPS agent for one site, counting the TLS connections it opens in `counter`. */
export function siteAgent(target: Target, host: string, opts: { keepAlive: boolean; cert?: Leaf; counter: string; alpn?: boolean }): Agent {
  const agent = new Agent({
    keepAlive: opts.keepAlive,
    maxSockets: 4,
    ca: target.ca,
    servername: host,
    ...(opts.alpn ? { ALPNProtocols: ['http/1.1'] } : {}),
    ...(opts.cert ? { cert: certPem(opts.cert), key: keyPem(opts.cert) } : {}),
  });
  // counted: a reload that dropped keep-alive connections would show as more connections than sockets
  const create = agent.createConnection.bind(agent);
  agent.createConnection = ((...args: Parameters<typeof create>) => {
    target.tally.count(opts.counter);
    return create(...args);
  }) as typeof agent.createConnection;
  return agent;
}

/**
 * An HTTP/2 client that keeps one session open and replaces it once it is
 * older than `lifetimeMs` (closing the old one gracefully a second later),
 * or when the server ended it. Sessions the server ended are counted under
 * `name`.
 */
/** A session this client closed (or is about to): the server's GOAWAY and close are then expected. */
type Tracked = ClientHttp2Session & { byUs?: boolean };

export class H2Client {
  #session: Tracked | null = null;
  #openedAt = 0;

  constructor(
    private readonly target: Target,
    private readonly host: string,
    private readonly name: string,
    private readonly cert: Leaf | null = null,
    private readonly lifetimeMs = sessionLifetimeMs,
  ) {}

  #current(): Tracked {
    const old = this.#session;
    if (old && !old.closed && !old.destroyed && Date.now() - this.#openedAt < this.lifetimeMs) return old;
    if (old && !old.closed && !old.destroyed) {
      old.byUs = true;
      // closed a moment later, not now: a stream created on it in this tick may not have sent its
      // HEADERS yet, and a GOAWAY sent first makes the server refuse it (REFUSED_STREAM; seen with
      // plain node:http2 servers too, so a client artefact, not the proxy's)
      setTimeout(() => old.close(), 1000);
    }
    const tally = this.target.tally;
    tally.count(`${this.name}: sessions opened`);
    const session: Tracked = h2connect(`https://${this.host}:${this.target.port}`, {
      createConnection: () =>
        tlsConnect({ host: '127.0.0.1', port: this.target.port, servername: this.host, ca: this.target.ca, ALPNProtocols: ['h2'], ...(this.cert ? { cert: certPem(this.cert), key: keyPem(this.cert) } : {}) }),
    });
    session.on('error', (err) => tally.count(`${this.name}: session errors (${(err as NodeJS.ErrnoException).code ?? err.message})`));
    // on a session we are closing ourselves, the server's GOAWAY is the normal answer; on a live one it is news
    session.on('goaway', (code) => tally.count(`${this.name}: GOAWAY received (code ${code}) on a ${session.byUs ? 'session we were closing' : 'live session'}`));
    session.on('close', () => {
      if (!session.byUs) tally.count(`${this.name}: sessions ended by the server`);
    });
    this.#session = session;
    this.#openedAt = Date.now();
    return session;
  }

  request(path: string, opts: { method?: 'GET' | 'POST'; body?: Buffer; timeoutMs?: number } = {}): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const session = this.#current();
      const stream = session.request({ [h2.HTTP2_HEADER_PATH]: path, [h2.HTTP2_HEADER_METHOD]: opts.method ?? 'GET' });
      const body = collector();
      let headers: H2Headers = {};
      let settled = false;
      const settle = (outcome: Answer | Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (outcome instanceof Error) reject(Object.assign(outcome, { message: `${outcome.message} (stream ${stream.id ?? '?'} on ${session.byUs ? 'a session we were closing' : 'the current session'})` }));
        else resolve(outcome);
      };
      const timeoutMs = opts.timeoutMs ?? goodTimeoutMs;
      const timer = setTimeout(() => {
        settle(new Error(`no complete answer within ${timeoutMs} ms`));
        stream.close(h2.NGHTTP2_CANCEL);
      }, timeoutMs);
      stream.on('response', (h) => (headers = h));
      stream.on('data', (c: Buffer) => body.add(c));
      stream.on('end', () => settle(body.finish(Number(headers[':status'] ?? 0), headers)));
      stream.on('error', (err) => settle(err));
      // closed before its end: reset by the server, or the session went away
      stream.on('close', () => settle(new Error(`stream closed before the answer ended (RST_STREAM code ${stream.rstCode}, status ${String(headers[':status'] ?? 'none')})`)));
      stream.end(opts.body);
    });
  }

  close(): void {
    const s = this.#session;
    if (s && !s.destroyed) {
      s.byUs = true;
      s.close();
      // a session that does not close within a few seconds is destroyed
      setTimeout(() => s.destroy(), 5000).unref();
    }
    this.#session = null;
  }
}

/** Runs one good request and records it under `kind`. */
export async function attempt(tally: Tally, kind: string, run: () => Promise<Answer>, expected: Expected): Promise<void> {
  const startedAt = Date.now();
  try {
    check(await run(), expected);
    tally.goodOk(kind);
  } catch (err) {
    tally.goodFailed(kind, startedAt, `${(err as NodeJS.ErrnoException).code ? `${(err as NodeJS.ErrnoException).code}: ` : ''}${(err as Error).message}`);
  }
}

/** The identity the proxy forwards for the soak's good client certificate contains this. */
export const goodIdentity = 'Subject="CN=soak-good-client"';

let sequence = 0;
/** A fresh request number, echoed back by the upstream, so a body meant for another request is caught. */
export const next = (): number => ++sequence;

export const paths = {
  fast: (i: number) => ({ path: `/api/fast?i=${i}`, expected: { text: `fast:${i}` } }),
  slow: (i: number, ms: number) => ({ path: `/api/slow?ms=${ms}&i=${i}`, expected: { text: `slow:${i}` } }),
  download: () => ({ path: '/api/download', expected: { length: downloadBytes, sha256: downloadSha256 } }),
  upload: () => ({ path: '/api/upload', expected: { text: uploadAnswer }, body: uploadBody }),
  whoami: (i: number) => ({ path: `/whoami?i=${i}`, expected: { prefix: `whoami:${i}:`, includes: goodIdentity } }),
} as const;
