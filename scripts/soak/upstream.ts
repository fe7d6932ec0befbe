/**
 * The soak's upstream, a node:http server in the load generator's process.
 * Every answer is predictable, so a client can check the body it got:
 *   GET  …/fast?i=N        "fast:N"
 *   GET  …/slow?ms=M&i=N   "slow:N" after M ms
 *   GET  …/download        downloadBytes of a fixed pattern, streamed in 64 KiB chunks with backpressure
 *   POST …/upload          "upload:<length>:<sha256 hex>" of the body it read
 *   GET  …/whoami?i=N      "whoami:N:<the identity header the proxy forwarded>"
 *   anything else          "path:<path as forwarded>"
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export const downloadBytes = 1024 * 1024;
export const uploadBytes = 256 * 1024;

/** Bytes that are not all alike, so a shifted or truncated body changes the hash. */
function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed + (i >> 12)) & 0xff;
  return b;
}

export const downloadBody = pattern(downloadBytes, 7);
export const downloadSha256 = createHash('sha256').update(downloadBody).digest('hex');
export const uploadBody = pattern(uploadBytes, 11);
export const uploadAnswer = `upload:${uploadBytes}:${createHash('sha256').update(uploadBody).digest('hex')}`;

export interface SoakUpstream {
  readonly origin: string;
  readonly server: Server;
  /** Requests seen, by last path segment ("fast", "download" …). */
  readonly seen: Map<string, number>;
  /** TCP connections the proxy has open to us now. */
  connections(): Promise<number>;
  close(): Promise<void>;
}

const chunk = 64 * 1024;

function stream(res: ServerResponse, body: Buffer): void {
  let at = 0;
  const pump = (): void => {
    while (at < body.length) {
      const part = body.subarray(at, at + chunk);
      at += part.length;
      if (!res.write(part)) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  pump();
}

export async function startSoakUpstream(): Promise<SoakUpstream> {
  const seen = new Map<string, number>();
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://upstream');
    const last = url.pathname.slice(url.pathname.lastIndexOf('/') + 1);
    seen.set(last, (seen.get(last) ?? 0) + 1);
    const i = url.searchParams.get('i') ?? '';
    const text = (body: string) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(body)) });
      res.end(body);
    };
    switch (last) {
      case 'fast':
        text(`fast:${i}`);
        return;
      case 'slow': {
        const timer = setTimeout(() => text(`slow:${i}`), Number(url.searchParams.get('ms') ?? 1000));
        res.on('close', () => clearTimeout(timer));
        return;
      }
      case 'download':
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(downloadBody.length) });
        stream(res, downloadBody);
        return;
      case 'upload': {
        const hash = createHash('sha256');
        let length = 0;
        req.on('data', (c: Buffer) => {
          length += c.length;
          hash.update(c);
        });
        req.on('end', () => text(`upload:${length}:${hash.digest('hex')}`));
        return;
      }
      case 'whoami':
        text(`whoami:${i}:${String(req.headers['x-client-cert'] ?? '')}`);
        return;
      default:
        req.resume();
        text(`path:${url.pathname}`);
    }
  };
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    server,
    seen,
    connections: () => new Promise((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n)))),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
