import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { connect as tcpConnect } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a real client binary with a hard time bound (in `env`, by default this process's); never rejects, the exit code tells. */
export function run(cmd: string, args: readonly string[], input = '', timeoutMs = 20_000, env: NodeJS.ProcessEnv = process.env): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8', env }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
    // a client that exits before reading its input (openssl often does) must not fail the test with EPIPE
    child.stdin?.on('error', () => {});
    child.stdin?.end(input);
  });
}

/** curl, silent but showing errors, bounded in time. */
export function curl(args: readonly string[]): Promise<RunResult> {
  return run('curl', ['-sS', '--max-time', '15', ...args]);
}

/** `curl --resolve` arguments so a test host name reaches 127.0.0.1:port. */
export function resolveTo(host: string, port: number): string[] {
  return ['--resolve', `${host}:${port}:127.0.0.1`];
}

export interface HandshakeResult extends RunResult {
  /** "TLSv1.3", or null when the handshake failed. */
  readonly protocol: string | null;
  readonly cipher: string | null;
  /** Subject line of the server certificate, e.g. "CN = api.test". */
  readonly peerSubject: string | null;
  /** Handshake signature type from -brief output, e.g. "ECDSA" or "RSA-PSS". */
  readonly signatureType: string | null;
  /** "X25519, 253 bits" … */
  readonly tempKey: string | null;
}

/** `openssl s_client -brief`: one handshake, then close. */
export async function sClient(port: number, args: readonly string[]): Promise<HandshakeResult> {
  const r = await run('openssl', ['s_client', '-brief', '-connect', `127.0.0.1:${port}`, ...args], '', 15_000);
  const text = r.stderr + r.stdout;
  const field = (name: string) => new RegExp(`^${name}: (.+)$`, 'm').exec(text)?.[1]?.trim() ?? null;
  const ok = /CONNECTION ESTABLISHED/.test(text);
  return {
    ...r,
    protocol: ok ? field('Protocol version') : null,
    cipher: ok ? field('Ciphersuite') : null,
    peerSubject: ok ? field('Peer certificate') : null,
    signatureType: ok ? field('Signature type') : null,
    tempKey: ok ? field('Server Temp Key') : null,
  };
}

/** One HTTP/1.1 request through `openssl s_client` (full output, not -brief), to see "New"/"Reused" and exchange session files. */
export async function sClientRequest(port: number, host: string, args: readonly string[]): Promise<RunResult & { reused: boolean; status: string | null }> {
  const request = `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`;
  const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', host, '-alpn', 'http/1.1', '-ign_eof', ...args], request, 15_000);
  return { ...r, reused: /^Reused, /m.test(r.stdout), status: /HTTP\/1\.1 (\d{3}) /.exec(r.stdout)?.[1] ?? null };
}

/** A verifying Node TLS client to the proxy on 127.0.0.1, offering one ALPN protocol; errors are left to 'close'. */
export function tlsClient(port: number, servername: string, caFile: string, alpn: 'http/1.1' | 'h2' = 'http/1.1'): TLSSocket {
  const socket = tlsConnect({ port, host: '127.0.0.1', servername, ca: readFileSync(caFile), ALPNProtocols: [alpn] });
  socket.on('error', () => {});
  return socket;
}

/** An HTTP/2 client session to the proxy on 127.0.0.1 for `servername`, destroyed after the test. */
export function h2Client(t: { after(fn: () => unknown): void }, port: number, servername: string, caFile: string): ClientHttp2Session {
  const session = h2connect(`https://${servername}:${port}`, { createConnection: () => tlsClient(port, servername, caFile, 'h2') });
  session.on('error', () => {});
  t.after(() => session.destroy());
  return session;
}

/**
 * One plain-HTTP request to a TLS port from `localAddress` (another loopback
 * address, to be a source of its own): what came back before the close — a
 * 400 from a port that serves the source, '' from one that closes it at accept.
 */
export function plaintextFrom(localAddress: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    let answer = '';
    const socket = tcpConnect({ host: '127.0.0.1', port, localAddress }, () => socket.write('GET / HTTP/1.1\r\nHost: api.test\r\n\r\n'));
    socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => resolve(answer));
  });
}
