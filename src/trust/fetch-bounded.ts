import { request } from 'undici';

/** What a revocation fetch may cost at most: a CRL or OCSP answer is small, and a slow or huge one is an attack or a fault. */
export interface FetchLimits {
  readonly timeoutMs: number;
  readonly maxBytes: number;
}

export interface FetchRequest {
  readonly method?: 'GET' | 'POST';
  readonly body?: Uint8Array;
  readonly contentType?: string;
  readonly accept?: string;
}

const maxRedirects = 3;

/** Thrown with a message that names the URL and what went wrong; `code` is stable for metrics. */
export class FetchError extends Error {
  readonly code: 'bad_url' | 'timeout' | 'too_large' | 'http_status' | 'network' | 'redirect';
  constructor(code: FetchError['code'], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FetchError';
    this.code = code;
  }
}

function httpUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new FetchError('bad_url', `${raw} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new FetchError('bad_url', `${raw} is not an http(s) URL; only http and https are fetched`);
  return url;
}

/**
 * Fetches a revocation document (CRL, OCSP response) over http or https,
 * bounded in time (the whole exchange, body included) and size. HTTPS is
 * verified against Node's bundled roots. Redirects are followed up to 3
 * times and only to http(s) URLs (RFC 5280 §4.2.1.13 distribution points are
 * often plain http; a redirect to file: or ldap: is refused). Rejects with a
 * FetchError; never resolves with a partial body.
 */
export async function fetchBounded(rawUrl: string, limits: FetchLimits, req: FetchRequest = {}): Promise<Buffer> {
  const deadline = AbortSignal.timeout(limits.timeoutMs);
  let url = httpUrl(rawUrl);
  for (let hop = 0; ; hop++) {
    let res;
    try {
      res = await request(url, {
        method: req.method ?? 'GET',
        body: req.body,
        headers: { ...(req.contentType ? { 'content-type': req.contentType } : {}), ...(req.accept ? { accept: req.accept } : {}) },
        signal: deadline,
      });
    } catch (err) {
      throw deadline.aborted
        ? new FetchError('timeout', `${url.href} did not answer within ${limits.timeoutMs} ms`, { cause: err })
        : new FetchError('network', `${url.href} could not be fetched: ${(err as Error).message}`, { cause: err });
    }
    // a body given up on (redirect, error status, too large) is destroyed; its late 'error' must not become an uncaught exception
    res.body.on('error', () => {});
    if (res.statusCode >= 300 && res.statusCode < 400 && res.headers.location) {
      res.body.destroy();
      if (hop >= maxRedirects) throw new FetchError('redirect', `${rawUrl} redirected more than ${maxRedirects} times`);
      const location = String(res.headers.location);
      try {
        url = httpUrl(new URL(location, url).href);
      } catch (err) {
        throw new FetchError('redirect', `${url.href} redirected to ${location}, which is not an http(s) URL`, { cause: err });
      }
      continue;
    }
    if (res.statusCode !== 200) {
      res.body.destroy();
      throw new FetchError('http_status', `${url.href} answered HTTP ${res.statusCode}`);
    }
    const declared = Number(res.headers['content-length'] ?? 0);
    if (declared > limits.maxBytes) {
      res.body.destroy();
      throw new FetchError('too_large', `${url.href} announced ${declared} bytes; at most ${limits.maxBytes} are read`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > limits.maxBytes) {
          res.body.destroy();
          throw new FetchError('too_large', `${url.href} sent more than ${limits.maxBytes} bytes`);
        }
        chunks.push(chunk);
      }
    } catch (err) {
      if (err instanceof FetchError) throw err;
      throw deadline.aborted
        ? new FetchError('timeout', `${url.href} did not finish sending within ${limits.timeoutMs} ms`, { cause: err })
        : new FetchError('network', `${url.href} broke off: ${(err as Error).message}`, { cause: err });
    }
    return Buffer.concat(chunks);
  }
}
