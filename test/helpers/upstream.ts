import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Scope } from './proxy.js';

export interface UpstreamOptions {
  /** Serve HTTPS with this certificate chain and key. */
  readonly tls?: { readonly certFile: string; readonly keyFile: string; readonly clientCa?: string };
  /** Name reported in every answer, to tell upstreams apart. */
  readonly name?: string;
}

export interface Upstream {
  readonly port: number;
  readonly origin: string;
  readonly server: Server;
}

export interface EchoAnswer {
  readonly name: string;
  readonly method: string;
  readonly url: string;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly bodyBytes: number;
  readonly clientCertSubject: string | null;
}

/**
 * A real HTTP(S) server playing the upstream:
 *   /download?bytes=N  streams N bytes
 *   /slow?ms=N         answers after N ms
 *   /hop               answers with hop-by-hop and HSTS fields that must not reach the client
 *   /sink?rate=N       reads the body at about N bytes/s, then answers with its size
 *   anything else      echoes method, url, headers and the body size as JSON
 * and answers WebSocket upgrades with 101, then echoes raw bytes.
 */
export async function startUpstream(t: Scope, opts: UpstreamOptions = {}): Promise<Upstream> {
  const name = opts.name ?? 'upstream';
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/download') {
      const total = Number(url.searchParams.get('bytes'));
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      let sent = 0;
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
      const pump = (): void => {
        while (sent < total) {
          const n = Math.min(chunk.length, total - sent);
          sent += n;
          if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
      return;
    }
    if (url.pathname === '/slow') {
      const timer = setTimeout(() => res.end('slow'), Number(url.searchParams.get('ms')));
      res.on('close', () => clearTimeout(timer));
      return;
    }
    if (url.pathname === '/hop') {
      res.writeHead(200, {
        connection: 'x-internal',
        'x-internal': 'secret',
        'keep-alive': 'timeout=5',
        'strict-transport-security': 'max-age=0',
        'x-kept': 'yes',
        'content-type': 'text/plain',
      });
      res.end('hop');
      return;
    }
    if (url.pathname === '/sink') {
      // a slow reader: pause for as long as the bytes read so far should have taken at `rate`
      const rate = Number(url.searchParams.get('rate'));
      const started = Date.now();
      let received = 0;
      req.on('data', (c: Buffer) => {
        received += c.length;
        const ahead = (received / rate) * 1000 - (Date.now() - started);
        if (ahead > 5) {
          req.pause();
          setTimeout(() => req.resume(), ahead);
        }
      });
      req.on('end', () => res.end(String(received)));
      return;
    }
    let bodyBytes = 0;
    req.on('data', (c: Buffer) => {
      bodyBytes += c.length;
    });
    req.on('end', () => {
      const peer = (req.socket as TLSSocket).getPeerCertificate?.();
      const answer: EchoAnswer = {
        name,
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        bodyBytes,
        clientCertSubject: peer && peer.subject ? `CN=${peer.subject.CN}` : null,
      };
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer));
    });
  };
  const server = opts.tls
    ? createHttpsServer(
        {
          cert: readFileSync(opts.tls.certFile),
          key: readFileSync(opts.tls.keyFile),
          ...(opts.tls.clientCa ? { ca: readFileSync(opts.tls.clientCa), requestCert: true, rejectUnauthorized: true } : {}),
        },
        handler,
      )
    : createHttpServer(handler);
  server.on('upgrade', (req, socket, head) => {
    if (req.url === '/ws-deny') {
      socket.end('HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 6\r\nConnection: close\r\n\r\ndenied');
      return;
    }
    if (req.url === '/ws-hang') {
      // never answers; when the proxy gives up, close our side too (the server allows half-open sockets)
      socket.on('end', () => socket.destroy());
      return;
    }
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-Upstream: ${name}\r\n\r\n`);
    if (head.length) socket.write(head);
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  const port = (server.address() as AddressInfo).port;
  return { port, origin: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`, server };
}

/**
 * A port that refuses connections: free now, and below the kernel's
 * ephemeral range, so no listener that a test later opens on port 0 (the
 * proxy, an upstream) can be handed it — one that was, answered the
 * "refusing" upstream with its own 400.
 */
export async function closedPort(): Promise<number> {
  let ephemeralLow = 32768;
  try {
    ephemeralLow = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || ephemeralLow;
  } catch {
    // not Linux: the usual default
  }
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = ephemeralLow - 1 - Math.floor(Math.random() * Math.min(10_000, ephemeralLow - 1025));
    const server = createHttpServer();
    const bound = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (!bound) continue;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    return port;
  }
  throw new Error('no free port below the ephemeral range');
}
