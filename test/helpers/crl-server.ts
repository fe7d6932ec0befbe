import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Scope } from './proxy.js';

export interface CrlServer {
  /** The URL of the CRL named `name` (a certificate's distribution point, a clientAuth.crl entry). */
  url(name: string): string;
  /** The CRLs served, by name (DER or PEM, served as they are); a name not here answers 404. */
  readonly files: Map<string, Buffer>;
  /** Fetches by name, missing ones included. */
  readonly hits: Map<string, number>;
}

/** A plain HTTP server on 127.0.0.1 handing out CRLs by name, closed after the test. */
export async function startCrlServer(t: Scope): Promise<CrlServer> {
  const files = new Map<string, Buffer>();
  const hits = new Map<string, number>();
  const server = createServer((req, res) => {
    const name = (req.url ?? '/').slice(1);
    hits.set(name, (hits.get(name) ?? 0) + 1);
    const body = files.get(name);
    if (!body) return res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'application/pkix-crl' }).end(body);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = (server.address() as AddressInfo).port;
  return { url: (name) => `http://127.0.0.1:${port}/${name}`, files, hits };
}
