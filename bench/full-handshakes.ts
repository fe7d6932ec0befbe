// Full TLS 1.3 handshakes from Node's TLS client, as many as one process makes:
// the load generator of bench/run.sh's full-tls13-pq, full-tls13-classical and
// new-conn scenarios. `openssl s_time` (OpenSSL 3.0 here) cannot offer the post-quantum
// hybrid X25519MLKEM768 (a Node whose OpenSSL has ML-KEM, Node 24, offers it with a
// key share by default), and sends no HTTP request after a full handshake; wrk with
// `Connection: close` resumes its sessions. Hence this client.
//
//   node --import tsx bench/full-handshakes.ts --port PORT --ca FILE [options]   # from the repo root
//
//   --host H          server address (default 127.0.0.1; an IP, so no SNI is sent, as with s_time)
//   --port P          server port (required)
//   --ca FILE         PEM root that signed the server's certificate; the client verifies it
//   --duration S      seconds to start new handshakes for (default 10); those in flight then finish
//   --concurrency N   handshakes in flight at once (default 4)
//   --groups LIST     the client's groups (ecdhCurve), e.g. X25519:P-256:P-384; default: the
//                     runtime's own list (Node 24: X25519MLKEM768 and X25519 with key shares)
//   --servername N    send SNI N and verify the certificate against N (default: no SNI)
//   --request PATH    after the handshake, send `GET PATH HTTP/1.1` (Host: the servername or host,
//                     Connection: close), read the whole response until the server closes, and
//                     count it as failed unless it is a complete 200 (default: no request)
//   --cert FILE --key FILE   present this client certificate when the server asks (mutual TLS)
//
// Each handshake is a new connection with no session offered: no `session` option, and
// OpenSSL's client never resumes on its own. Every handshake is checked with
// isSessionReused() and counted by the group getEphemeralKeyInfo() names. Without --request,
// once the handshake completes, the client ends the connection (its Finished, close_notify, FIN) and closes the
// socket without reading the server's session tickets. `s_time -new` closes right after its
// Finished, without close_notify; Node cannot do that: the client's Finished is still queued
// when 'secureConnect' fires, so destroy() at that point drops it, and the server never
// completes the handshake (no Finished check, no session tickets, an ECONNRESET instead).
//
// Before the timed loop, one handshake goes through a relay in this process that keeps
// both directions' bytes: its ClientHello says which key shares were offered, and the
// server's first ServerHello whether it asked for another one (HelloRetryRequest).
//
// Output on stdout, one fact per line (bench/run.sh reads them):
//   sample: key shares offered X25519MLKEM768,X25519; hello retry request no; group X25519MLKEM768
//   handshakes: 5123 in 10.004 s, 512/s
//   groups: X25519MLKEM768 5123
//   resumed: 0
//   failed: 0
// plus one `failure: CODE COUNT` line per kind of failure (`http_401` for a response other
// than 200, `http_incomplete` for one cut short). With --request, `handshakes` counts only
// connections whose response was a complete 200. Exit status 1 when a handshake
// was resumed (the figures would not be full handshakes) or none completed.
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect as netConnect, createServer, type AddressInfo, type Socket } from 'node:net';
import { connect as tlsConnect, createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import { parseArgs } from 'node:util';
import { groupName } from '../src/config/tls-groups.js';
import { parseClientHello } from '../src/edge/client-hello.js';

const { values: opts } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    ca: { type: 'string' },
    duration: { type: 'string', default: '10' },
    concurrency: { type: 'string', default: '4' },
    groups: { type: 'string' },
    servername: { type: 'string' },
    request: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
  },
});
const usage =
  'usage: node --import tsx bench/full-handshakes.ts --port PORT --ca FILE [--duration S] [--concurrency N] [--groups LIST] [--servername NAME] [--request PATH] [--cert FILE --key FILE]';
const port = Number(opts.port);
const durationS = Number(opts.duration);
const concurrency = Number(opts.concurrency);
if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`--port: '${opts.port ?? ''}' is not a TCP port; ${usage}`);
if (!opts.ca) throw new Error(`--ca: the PEM root of the server's certificate is required; ${usage}`);
if (!(durationS > 0)) throw new Error(`--duration: '${opts.duration}' is not a positive number of seconds`);
if (!Number.isInteger(concurrency) || concurrency < 1) throw new Error(`--concurrency: '${opts.concurrency}' is not a positive integer`);
if (!opts.cert !== !opts.key) throw new Error(`--cert and --key go together (got only ${opts.cert ? '--cert' : '--key'}); ${usage}`);
if (opts.request !== undefined && !opts.request.startsWith('/')) throw new Error(`--request: '${opts.request}' is not a path starting with /`);
const host = opts.host;
const servername = opts.servername;
// built once: the same bytes for every connection
const request =
  opts.request === undefined ? null : Buffer.from(`GET ${opts.request} HTTP/1.1\r\nHost: ${servername ?? host}\r\nUser-Agent: full-handshakes\r\nConnection: close\r\n\r\n`, 'latin1');

// One context for every connection: building one per connect (what tls.connect does
// without `secureContext`) would spend the client's core on parsing the CA again.
const secureContext: SecureContext = createSecureContext({
  ca: readFileSync(opts.ca),
  minVersion: 'TLSv1.3',
  ...(opts.groups ? { ecdhCurve: opts.groups } : {}),
  ...(opts.cert && opts.key ? { cert: readFileSync(opts.cert), key: readFileSync(opts.key) } : {}),
});

interface Outcome {
  readonly group: string;
  readonly resumed: boolean;
}

/** A response that was not a complete 200; its code names the failure in the output. */
class HttpFailure extends Error {
  constructor(readonly code: string) {
    super(code);
  }
}

/** Whether `raw` (everything the server sent before closing) is a complete 200 response; throws HttpFailure otherwise. */
function checkResponse(raw: Buffer): void {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) throw new HttpFailure('http_incomplete');
  const head = raw.toString('latin1', 0, end);
  const status = head.slice(9, 12);
  if (status !== '200') throw new HttpFailure(`http_${status || 'none'}`);
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  const body = raw.length - end - 4;
  const complete = length ? body === Number(length[1]) : /\r\ntransfer-encoding:\s*chunked/i.test(head) ? raw.subarray(-5).toString('latin1') === '0\r\n\r\n' : true;
  if (!complete) throw new HttpFailure('http_incomplete');
}

/**
 * One full handshake on a new connection (through `via` when given), then the request when
 * --request is set; settles when the client's side is done, then closes.
 */
function handshake(via?: Socket): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const socket: TLSSocket = tlsConnect({ host, port, secureContext, ...(servername ? { servername } : {}), ...(via ? { socket: via } : {}) });
    socket.once('secureConnect', () => {
      const outcome = { group: (socket.getEphemeralKeyInfo() as { name?: string }).name ?? 'none', resumed: socket.isSessionReused() };
      if (!request) {
        resolve(outcome);
        // end() sends what is queued (the Finished) first; destroy() once the FIN is out skips reading the tickets
        socket.end(() => socket.destroy());
        return;
      }
      // Connection: close, so the response ends when the server closes; the socket then ends our side too
      const chunks: Buffer[] = [];
      socket.on('data', (d: Buffer) => chunks.push(d));
      socket.once('end', () => {
        try {
          checkResponse(Buffer.concat(chunks));
          resolve(outcome);
        } catch (err) {
          reject(err as Error);
        }
      });
      socket.write(request);
    });
    // without a request, an error after 'secureConnect' (a reset while closing) no longer matters: the promise is settled
    socket.on('error', (err) => {
      socket.destroy();
      reject(err);
    });
  });
}

/** RFC 8446 §4.1.3: a ServerHello with this random is a HelloRetryRequest. */
const helloRetryRandom = Buffer.from('cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c', 'hex');

/** The sample handshake through a relay that keeps each direction's bytes. */
async function sampleHandshake(): Promise<string> {
  const fromClient: Buffer[] = [];
  const fromServer: Buffer[] = [];
  const relay = createServer((inbound) => {
    const outbound = netConnect({ host, port });
    inbound.on('data', (d: Buffer) => (fromClient.push(d), outbound.write(d)));
    outbound.on('data', (d: Buffer) => (fromServer.push(d), inbound.write(d)));
    inbound.on('close', () => outbound.destroy());
    outbound.on('close', () => inbound.destroy());
    inbound.on('error', () => outbound.destroy());
    outbound.on('error', () => inbound.destroy());
  });
  relay.listen(0, '127.0.0.1');
  await once(relay, 'listening');
  try {
    const via = netConnect({ host: '127.0.0.1', port: (relay.address() as AddressInfo).port });
    const { group } = await handshake(via);
    const hello = parseClientHello(Buffer.concat(fromClient));
    const shares = hello.kind === 'hello' ? hello.hello.keyShares.map(groupName).join(',') || 'none' : `unreadable (${hello.kind})`;
    // first record: handshake (22), first message: ServerHello (2); its random follows the 4-byte
    // message header and the 2-byte legacy_version
    const first = Buffer.concat(fromServer);
    const retry = first[0] === 22 && first[5] === 2 && first.subarray(11, 43).equals(helloRetryRandom);
    return `key shares offered ${shares}; hello retry request ${retry ? 'yes' : 'no'}; group ${group}`;
  } finally {
    relay.close();
  }
}

/** The name of a failure in the output: its code (an errno, an OpenSSL reason, http_*), else its message. */
const failureCode = (err: unknown): string => (err as NodeJS.ErrnoException).code ?? (err as Error).message;

// a failed sample is reported and the timed loop still runs: its failures are counted there
// (bench/run.sh's mTLS check runs this client without its certificate, expecting just that)
const sample = await sampleHandshake().catch((err: unknown) => `failed (${failureCode(err)})`);
process.stdout.write(`sample: ${sample}\n`);

const groups = new Map<string, number>();
const failures = new Map<string, number>();
let completed = 0;
let resumed = 0;
const started = performance.now();
const deadline = started + durationS * 1000;

async function loop(): Promise<void> {
  while (performance.now() < deadline) {
    try {
      const outcome = await handshake();
      completed++;
      if (outcome.resumed) resumed++;
      groups.set(outcome.group, (groups.get(outcome.group) ?? 0) + 1);
    } catch (err) {
      const code = failureCode(err);
      failures.set(code, (failures.get(code) ?? 0) + 1);
    }
  }
}

await Promise.all(Array.from({ length: concurrency }, loop));
const elapsedS = (performance.now() - started) / 1000;
let failed = 0;
for (const n of failures.values()) failed += n;
const lines = [
  `handshakes: ${completed} in ${elapsedS.toFixed(3)} s, ${Math.round(completed / elapsedS)}/s`,
  `groups: ${[...groups].map(([name, n]) => `${name} ${n}`).join(', ') || 'none'}`,
  `resumed: ${resumed}`,
  `failed: ${failed}`,
  ...[...failures].map(([code, n]) => `failure: ${code} ${n}`),
];
process.stdout.write(lines.join('\n') + '\n');
if (resumed > 0) process.stderr.write(`${resumed} of ${completed} handshakes were resumptions, not full handshakes\n`);
if (resumed > 0 || completed === 0) process.exitCode = 1;
