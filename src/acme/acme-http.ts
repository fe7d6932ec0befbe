import { AsyncLocalStorage } from 'node:async_hooks';
import { Agent, get } from 'node:https';
import { rootCertificates } from 'node:tls';
import acme from 'acme-client';

/**
 * The HTTP side of acme-client (one shared axios instance), set up once.
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
/** No single request to a CA may take longer. */
const requestTimeoutMs = 30_000;

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

let installed = false;
function install(): void {
  if (installed) return;
  installed = true;
  // acme-client retries a failed request itself (5 times, 5 s apart); one retry is enough: our own backoff takes over after that
  (acme.axios.defaults as unknown as { acmeSettings: { retryMaxAttempts: number } }).acmeSettings.retryMaxAttempts = 1;
  acme.axios.defaults.timeout = requestTimeoutMs;
  acme.axios.interceptors.request.use((config) => {
    const session = sessions.getStore();
    // outside a session (nothing of ours) the public roots alone apply
    config.httpsAgent = session?.agent ?? agentFor(null);
    return config;
  });
  acme.axios.interceptors.response.use((response) => {
    const session = sessions.getStore();
    if (!session) return response;
    const data = response.data as (ProblemDocument & { error?: ProblemDocument; status?: unknown }) | undefined;
    // an error response, or an authorization/challenge that went invalid with its error
    session.problem = response.status >= 400 ? asProblem(data) : data?.status === 'invalid' ? asProblem(data.error) : null;
    return response;
  });
}

/** Largest JSON answer read from a directory or its renewal info. */
const maxJsonBytes = 64 * 1024;

const failure = (message: string, code: string) => Object.assign(new Error(message), { code });

/**
 * GETs a JSON document from the CA of the current session, in one attempt,
 * bounded in time and size. Used for the directory before an order (so that
 * a CA that is down or not trusted is reported as such: acme-client turns a
 * network failure into a TypeError once its retries are used up) and for
 * renewal information.
 */
export function getJson(url: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const req = get(url, { agent: sessions.getStore()?.agent ?? agentFor(null), timeout: 10_000 }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(failure(`${url} answered HTTP ${res.statusCode}`, 'BAD_DIRECTORY'));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxJsonBytes) req.destroy(failure(`${url} answered more than ${maxJsonBytes} bytes`, 'BAD_DIRECTORY'));
        else chunks.push(chunk);
      });
      res.on('error', reject);
      // a connection that ends before the body does: 'end' never comes
      res.on('close', () => {
        if (!res.complete) reject(failure(`the connection to ${url} closed in the middle of the answer`, 'ECONNRESET'));
      });
      res.on('end', () => {
        try {
          const value = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
          if (typeof value !== 'object' || value === null) throw new Error('not a JSON object');
          resolve(value as Record<string, unknown>);
        } catch (err) {
          reject(failure(`${url} did not answer a JSON object (${(err as Error).message})`, 'BAD_DIRECTORY'));
        }
      });
    });
    req.on('timeout', () => req.destroy(failure('no answer within 10 s', 'ETIMEDOUT')));
    req.on('error', reject);
  });
}

/**
 * Runs an exchange with a CA whose TLS is verified against the public roots
 * plus `caPem`; a failure comes back as the problem document of the failed
 * exchange, or as the class of the local error.
 */
export async function withCa<T>(caPem: string | null, fn: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; problem: AcmeProblem }> {
  install();
  const session: Session = { agent: agentFor(caPem), problem: null };
  try {
    return { ok: true, value: await sessions.run(session, fn) };
  } catch (err) {
    return { ok: false, problem: session.problem ?? classify(err as Error & { code?: string }) };
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
