// The floor under Portcullis: a bare Node TLS proxy with none of its work. Node's
// HTTP/1.1 + HTTP/2 server (the one Portcullis uses) forwards each request through an
// undici Pool with `dispatch` (Portcullis's dispatch), adds X-Forwarded-For/-Proto, a
// request id and HSTS, and does nothing else: no ClientHello inspection, no
// fingerprints, no events, no access log, no metrics, no header hygiene, no checks.
// bench/run.sh runs it as the `node-bare` row: what Node and undici cost on this
// machine before any of Portcullis's features, for reading Portcullis's figures.
//
//   node bench/node-bare.ts --port P --cert F --key F --upstream http://127.0.0.1:PORT [--client-ca F --crl F]
//
// Node 22.18+ and 24 run this file directly (type stripping); Node 20 needs --import tsx.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { createSecureServer, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import { parseArgs } from 'node:util';
import { Pool, type Dispatcher } from 'undici';

const { values: opts } = parseArgs({
  options: { port: { type: 'string' }, cert: { type: 'string' }, key: { type: 'string' }, upstream: { type: 'string' }, 'client-ca': { type: 'string' }, crl: { type: 'string' } },
});
if (!opts.port || !opts.cert || !opts.key || !opts.upstream) throw new Error('usage: node bench/node-bare.ts --port P --cert F --key F --upstream URL [--client-ca F --crl F]');

const pool = new Pool(opts.upstream, { connections: 256 });
const mtls = opts['client-ca'] ? { requestCert: true, rejectUnauthorized: true, ca: readFileSync(opts['client-ca']), crl: opts.crl ? readFileSync(opts.crl) : undefined } : {};
const server = createSecureServer(
  {
    cert: readFileSync(opts.cert),
    key: readFileSync(opts.key),
    allowHTTP1: true,
    minVersion: 'TLSv1.2',
    ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305',
    honorCipherOrder: true,
    ...mtls,
  },
  (req: Http2ServerRequest, res: Http2ServerResponse) => {
    const id = randomUUID();
    const headers: Record<string, string> = { host: req.headers.host ?? req.headers[':authority'] ?? '', 'x-forwarded-for': req.socket.remoteAddress ?? '', 'x-forwarded-proto': 'https', 'x-request-id': id };
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart() {},
      onResponseStart(_c, status: number, upstream: IncomingHttpHeaders) {
        res.writeHead(status, { 'content-type': upstream['content-type'] ?? 'text/plain', 'content-length': upstream['content-length'] ?? '0', 'strict-transport-security': 'max-age=31536000', 'x-request-id': id });
      },
      onResponseData(_c, chunk: Buffer) {
        res.write(chunk);
      },
      onResponseEnd() {
        res.end();
      },
      onResponseError() {
        if (!res.headersSent) res.writeHead(502);
        res.end();
      },
    };
    pool.dispatch({ path: req.url, method: req.method as Dispatcher.HttpMethod, headers }, handler);
  },
);
server.listen(Number(opts.port), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
