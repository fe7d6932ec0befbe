import { AsyncLocalStorage } from 'node:async_hooks';
import { Agent, get } from 'node:https';
import { rootCertificates } from 'node:tls';
import type AcmeClient from 'acme-client';

/**
 * The HTTP side of acme-client (one shared axios instance), set up once, at
 * the first exchange with a CA: acme-client, axios and node-forge are loaded
 * then, so an instance without `acme` sites never loads them (about 25 MB of
 * RSS on Node 20, 40 MB on Node 24, measured alone; docs/benchmarks.md, "Memory").
 * Every exchange with a CA runs in a session (async context) that carries:
 * - the TLS trust for that source: the public roots plus its `acme.ca`, so
 *   one source's extra CA never vouches for another source's server, even
 *   for the same directory;
 * - the problem documents (RFC 8555 §6.7) the server sent, because
 *   acme-client's errors keep only the detail text and operators need the
 *   type too.
 */

export interface AcmeProblem {
  /** The problem type without its `urn:ietf:params:acme:error:` prefix (`rejectedIdentifier`, `connection` …), or our own class of failure. */
  readonly type: string;
  readonly detail: string;
}

interface Session {
  readonly agent: Agent;
  /** The problem of the latest failed exchange; cleared by a success (acme-client retries some, such as badNonce). */
  problem: AcmeProblem | null;
  /** The URL of the latest attempt that ran out of time; cleared when the next attempt starts. */
  timedOut: string | null;
}

const sessions = new AsyncLocalStorage<Session>();
/** One agent per extra CA (keep-alive to the CA across orders); the public roots alone for sources without one. */
const agents = new Map<string, Agent>();
const agentFor = (caPem: string | null): Agent => {
  const key = caPem ?? '';
  let agent = agents.get(key);
  if (!agent) {
    agent = new Agent({ ca: caPem ? [...rootCertificates, caPem] : [...rootCertificates], keepAlive: true, minVersion: 'TLSv1.2' });
    agents.set(key, agent);
  }
  return agent;
};
const prefix = 'urn:ietf:params:acme:error:';
/** No single request to a CA may take longer: connect, TLS handshake, headers and body together. */
const requestTimeoutMs = 30_000;

/** The running deadline of each attempt, by its axios config (acme-client retries with the same config). */
const deadlines = new WeakMap<object, NodeJS.Timeout>();

/**
 * A deadline for one attempt. axios's own `timeout` ends only the wait for
 * the response headers; after them a server that sends its body a byte at a
 * time would hold the order until its 10-minute bound. The abort ends the
 * attempt wherever it is and marks the session, so the failure is reported
 * as a timeout rather than as acme-client's cancelled request.
 */
function startDeadline(config: object, url: string, session: Session | undefined): AbortSignal {
  endDeadline(config);
  const controller = new AbortController();
  if (session) session.timedOut = null;
  const timer = setTimeout(() => {
    if (session) session.timedOut = url;
    controller.abort();
  }, requestTimeoutMs);
  timer.unref();
  deadlines.set(config, timer);
  return controller.signal;
}

function endDeadline(config: object | undefined): void {
  if (!config) return;
  clearTimeout(deadlines.get(config));
  deadlines.delete(config);
}

interface ProblemDocument {
  type?: unknown;
  detail?: unknown;
  subproblems?: { type?: unknown; detail?: unknown; identifier?: { value?: unknown } }[];
}

function asProblem(doc: ProblemDocument | undefined): AcmeProblem | null {
  if (!doc || typeof doc.type !== 'string') return null;
  const sub = doc.subproblems?.[0];
  const detail = `${String(doc.detail ?? '')}${sub && typeof sub.detail === 'string' ? ` (${String(sub.identifier?.value ?? '')}: ${sub.detail})` : ''}`;
  return { type: doc.type.startsWith(prefix) ? doc.type.slice(prefix.length) : doc.type, detail };
}

let installed: Promise<void> | null = null;
/** Loads and sets up acme-client once; a failed load is tried again by the next exchange. */
function install(): Promise<void> {
  installed ??= import('acme-client').then(({ default: acme }) => configure(acme), (err: unknown) => {
    installed = null;
    throw err;
  });
  return installed;
}

function configure(acme: typeof AcmeClient): void {
  // acme-client retries a failed request itself (5 times, 5 s apart); one retry is enough: our own backoff takes over after that
  (acme.axios.defaults as unknown as { acmeSettings: { retryMaxAttempts: number } }).acmeSettings.retryMaxAttempts = 1;
  acme.axios.defaults.timeout = requestTimeoutMs;
  acme.axios.interceptors.request.use((config) => {
    const session = sessions.getStore();
    // outside a session (nothing of ours) the public roots alone apply
    config.httpsAgent = session?.agent ?? agentFor(null);
    config.signal = startDeadline(config, String(config.url), session);
    return config;
  });
  acme.axios.interceptors.response.use(
    (response) => {
      endDeadline(response.config);
      return noteProblem(response);
    },
    (err: unknown) => {
      endDeadline((err as { config?: object } | null)?.config);
      throw err;
    },
  );
}

/** Keeps the problem document of a failed exchange on the session; a success clears it. */
function noteProblem<R extends { status: number; data?: unknown }>(response: R): R {
  const session = sessions.getStore();
  if (!session) return response;
  const data = response.data as (ProblemDocument & { error?: ProblemDocument; status?: unknown }) | undefined;
  // an error response, or an authorization/challenge that went invalid with its error
  session.problem = response.status >= 400 ? asProblem(data) : data?.status === 'invalid' ? asProblem(data.error) : null;
  return response;
}

/** Largest JSON answer read from a directory or its renewal info. */
const maxJsonBytes = 64 * 1024;

const failure = (message: string, code: string) => Object.assign(new Error(message), { code });

/** The bound of one `getJson` exchange: connect, TLS handshake, headers and body together. */
const jsonTimeoutMs = 10_000;

/**
 * GETs a JSON document from the CA of the current session, in one attempt,
 * bounded in time and size. Used for the directory before an order (so that
 * a CA that is down or not trusted is reported as such: acme-client turns a
 * network failure into a TypeError once its retries are used up) and for
 * renewal information. One deadline covers the whole exchange: a socket
 * timeout alone measures idleness, which a server that stalls the TLS
 * handshake or sends its answer a byte at a time never reaches.
 */
export function getJson(url: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const req = get(url, { agent: sessions.getStore()?.agent ?? agentFor(null) }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        settle(() => reject(failure(`${url} answered HTTP ${res.statusCode}`, 'BAD_DIRECTORY')));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxJsonBytes) fail(failure(`${url} answered more than ${maxJsonBytes} bytes`, 'BAD_DIRECTORY'));
        else chunks.push(chunk);
      });
      res.on('error', (err) => settle(() => reject(err)));
      // a connection that ends before the body does: 'end' never comes
      res.on('close', () => {
        if (!res.complete) settle(() => reject(failure(`the connection to ${url} closed in the middle of the answer`, 'ECONNRESET')));
      });
      res.on('end', () => {
        try {
          const value = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
          if (typeof value !== 'object' || value === null) throw new Error('not a JSON object');
          settle(() => resolve(value as Record<string, unknown>));
        } catch (err) {
          settle(() => reject(failure(`${url} did not answer a JSON object (${(err as Error).message})`, 'BAD_DIRECTORY')));
        }
      });
    });
    let done = false;
    const settle = (finish: () => void) => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      finish();
    };
    // rejects first, so the errors destroying the request causes are not what the caller sees
    const fail = (err: Error) => {
      settle(() => reject(err));
      req.destroy(err);
    };
    const deadline = setTimeout(() => fail(failure(`no answer within ${jsonTimeoutMs / 1000} s`, 'ETIMEDOUT')), jsonTimeoutMs);
    req.on('error', (err) => settle(() => reject(err)));
  });
}

/**
 * Runs an exchange with a CA whose TLS is verified against the public roots
 * plus `caPem`; a failure comes back as the problem document of the failed
 * exchange, or as the class of the local error.
 */
export async function withCa<T>(caPem: string | null, fn: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; problem: AcmeProblem }> {
  const session: Session = { agent: agentFor(caPem), problem: null, timedOut: null };
  try {
    await install();
    return { ok: true, value: await sessions.run(session, fn) };
  } catch (err) {
    const timedOut = session.timedOut ? { type: 'unreachable', detail: `the ACME server cannot be reached (ETIMEDOUT): ${session.timedOut} did not answer within ${requestTimeoutMs / 1000} s` } : null;
    return { ok: false, problem: session.problem ?? timedOut ?? classify(err as Error & { code?: string }) };
  }
}

/** A failure without a problem document: the network, TLS, or something else. */
function classify(err: Error & { code?: string }): AcmeProblem {
  const code = err.code ?? '';
  if (['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ECONNABORTED'].includes(code)) {
    return { type: 'unreachable', detail: `the ACME server cannot be reached (${code}): ${err.message}` };
  }
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code)) return { type: 'untrusted_server', detail: `the ACME server's TLS certificate is not trusted (${code}); add its CA as acme.ca` };
  if (code === 'BAD_DIRECTORY') return { type: 'bad_directory', detail: err.message };
  // what acme-client throws when a connection fails in the middle of an order, after its own retry
  if (err instanceof TypeError && /reading 'config'/.test(err.message)) return { type: 'unreachable', detail: 'the connection to the ACME server failed during the order' };
  return { type: 'failed', detail: err.message };
}
