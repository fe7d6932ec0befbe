/**
 * Regenerates test/fixtures/client-hellos/: the ClientHello each real client
 * sends, byte for byte as it arrived on a raw TCP socket, and index.json with
 * its fingerprints. Run by hand, never by tests or CI (it needs the clients
 * and Wireshark's tshark):
 *
 *   node --import tsx scripts/capture-client-hellos.ts
 *
 * Debian packages: openssl curl gnutls-bin golang-go chromium tshark
 * (text2pcap comes with wireshark-common).
 *
 * The recorded JA3 is the one tshark computes, not ours, so the unit test
 * checks src/edge/fingerprints.ts against another implementation. tshark
 * (4.0 in bookworm) has no JA4: the recorded JA4 is ours, and this script
 * refuses to write it unless a JA4 computed here from tshark's dissection
 * (FoxIO technical_details/JA4.md) agrees. A JA3 disagreement is printed and
 * makes the exit code 1, but the fixtures are written so the unit test shows it.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseClientHello } from '../src/edge/client-hello.js';
import { ja3, ja4 } from '../src/edge/fingerprints.js';

const sni = 'api.example.test';
const fixturesDir = fileURLToPath(new URL('../test/fixtures/client-hellos/', import.meta.url));

interface Client {
  /** Fixture file stem. */
  readonly name: string;
  /** A command whose first line of output names the client and its version. */
  readonly version: readonly [string, ...string[]];
  /** The server name the client is expected to send; null for none. */
  readonly sni: string | null;
  /** Files written into the client's temporary directory before it starts. */
  readonly files?: Readonly<Record<string, string>>;
  readonly command: (port: number, dir: string) => { readonly file: string; readonly args: readonly string[]; readonly env?: Readonly<Record<string, string>> };
  /** `go run` compiles crypto/tls with an empty cache first. */
  readonly timeoutMs?: number;
}

const goProgram = `package main

import (
	"crypto/tls"
	"fmt"
	"os"
)

// crypto/tls defaults apart from the server name; the capture server hangs up
// after the ClientHello, so the handshake fails by design.
func main() {
	conn, err := tls.Dial("tcp", os.Args[1], &tls.Config{ServerName: "${sni}"})
	if err == nil {
		conn.Close()
	}
	fmt.Fprintln(os.Stderr, err)
}
`;

const clients: readonly Client[] = [
  {
    name: 'openssl-s-client',
    version: ['openssl', 'version'],
    sni,
    command: (port) => ({ file: 'openssl', args: ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', sni] }),
  },
  {
    name: 'openssl-s-client-tls1_2',
    version: ['openssl', 'version'],
    sni: null,
    command: (port) => ({ file: 'openssl', args: ['s_client', '-connect', `127.0.0.1:${port}`, '-tls1_2', '-noservername'] }),
  },
  {
    name: 'curl',
    version: ['curl', '--version'],
    sni,
    command: (port) => ({ file: 'curl', args: ['-sS', '--resolve', `${sni}:${port}:127.0.0.1`, `https://${sni}:${port}/`] }),
  },
  {
    name: 'gnutls-cli',
    version: ['gnutls-cli', '--version'],
    sni,
    command: (port) => ({ file: 'gnutls-cli', args: [`--sni-hostname=${sni}`, `--port=${port}`, '127.0.0.1'] }),
  },
  {
    name: 'go-crypto-tls',
    version: ['go', 'version'],
    sni,
    files: { 'main.go': goProgram },
    timeoutMs: 300_000,
    command: (port, dir) => ({
      file: 'go',
      args: ['run', 'main.go', `127.0.0.1:${port}`],
      // no network and nothing from the developer's Go setup
      env: { GOCACHE: join(dir, 'gocache'), GOPATH: join(dir, 'gopath'), GOFLAGS: '', GOPROXY: 'off', GOENV: 'off', GOTOOLCHAIN: 'local' },
    }),
  },
  {
    name: 'chromium',
    version: ['chromium', '--version'],
    sni,
    timeoutMs: 60_000,
    command: (port, dir) => ({
      file: 'chromium',
      args: [
        '--headless=new',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-dev-shm-usage',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        `--user-data-dir=${join(dir, 'profile')}`,
        `--host-resolver-rules=MAP ${sni} 127.0.0.1`,
        `https://${sni}:${port}/`,
      ],
      env: { HOME: dir },
    }),
  },
];

function versionOf(command: Client['version']): string {
  const [file, ...args] = command;
  const out = execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const line = out.split('\n').find((l) => l.trim() !== '');
  if (!line) throw new Error(`\`${command.join(' ')}\` printed nothing`);
  return line.trim();
}

/** The shortest prefix the parser accepts as a whole ClientHello: anything the client sent after it is not part of the fixture. */
function helloPrefix(bytes: Buffer): Buffer {
  let n = 0;
  for (let r = parseClientHello(bytes.subarray(0, 0)); r.kind === 'incomplete'; r = parseClientHello(bytes.subarray(0, n))) {
    if (r.need <= n || r.need > bytes.length) throw new Error(`parser asked for ${r.need} bytes after ${n} of ${bytes.length}`);
    n = r.need;
  }
  return bytes.subarray(0, n);
}

/** Stops a client and everything it started (chromium's helpers, the binary `go run` built): it runs in its own process group. */
async function stopGroup(child: ChildProcess): Promise<void> {
  const pid = child.pid;
  if (pid === undefined) return;
  const signalGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-pid, signal);
    } catch {
      // ESRCH: the group is already gone
    }
  };
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    signalGroup('SIGTERM');
    const force = setTimeout(() => signalGroup('SIGKILL'), 5_000);
    await exited;
    clearTimeout(force);
  }
  signalGroup('SIGKILL');
}

/** Starts a client against a fresh raw TCP listener and returns the first ClientHello it sends. */
async function capture(client: Client): Promise<Buffer> {
  const dir = mkdtempSync(join(tmpdir(), `hello-${client.name}-`));
  for (const [name, text] of Object.entries(client.files ?? {})) writeFileSync(join(dir, name), text);
  const server = createServer();
  const sockets = new Set<Socket>();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const { file, args, env } = client.command(port, dir);
  const child = spawn(file, args, { cwd: dir, detached: true, stdio: ['pipe', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  const timeoutMs = client.timeoutMs ?? 20_000;
  let timer: NodeJS.Timeout | undefined;
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      const fail = (why: string) => reject(new Error(`${client.name}: ${why}\n  command: ${file} ${args.join(' ')}\n  stderr: ${stderr.trim() || '(empty)'}`));
      timer = setTimeout(() => fail(`no ClientHello within ${timeoutMs} ms`), timeoutMs);
      child.once('error', (err) => fail(`could not start (${err.message}); install it or drop it from the client table`));
      child.once('exit', (code, signal) => fail(`exited (${signal ?? code}) before its ClientHello was complete`));
      let taken = false;
      server.on('connection', (socket) => {
        sockets.add(socket);
        socket.on('error', () => {});
        // chromium may open a second connection; only the first one is the fixture
        if (taken) {
          socket.destroy();
          return;
        }
        taken = true;
        let received = Buffer.alloc(0);
        socket.on('data', (d: Buffer) => {
          received = Buffer.concat([received, d]);
          const r = parseClientHello(received);
          if (r.kind === 'incomplete') return;
          socket.destroy();
          if (r.kind !== 'hello') return fail(`the parser classified its first flight as ${JSON.stringify(r)}`);
          if (r.hello.serverName !== client.sni) return fail(`sent SNI ${r.hello.serverName}, expected ${client.sni}`);
          resolve(helloPrefix(received));
        });
      });
    });
  } finally {
    clearTimeout(timer);
    await stopGroup(child);
    for (const s of sockets) s.destroy();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What tshark makes of a ClientHello: its own JA3 and the fields JA4 is built from. */
interface Dissection {
  readonly ja3: string;
  readonly ja3Text: string;
  readonly legacyVersion: number;
  readonly supportedVersions: readonly number[];
  readonly cipherSuites: readonly number[];
  /** Extension types in the order tshark lists them. */
  readonly extensions: readonly number[];
  readonly serverName: string | null;
  readonly firstAlpn: string | null;
  /** From the signature_algorithms extension only: signature_algorithms_cert uses the same tshark field. */
  readonly signatureAlgorithms: readonly number[];
}

type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

/** Every value of `key` under `node`, in document order. */
function valuesOf(node: Json, key: string): string[] {
  if (node === null || typeof node !== 'object') return [];
  if (Array.isArray(node)) return node.flatMap((n) => valuesOf(n, key));
  return Object.entries(node).flatMap(([k, v]) => (k === key ? [v].flat().map(String) : valuesOf(v, key)));
}

function findClientHello(node: Json): { [key: string]: Json } | null {
  if (node === null || typeof node !== 'object') return null;
  if (!Array.isArray(node) && node['tls.handshake.type'] === '1') return node;
  for (const child of Array.isArray(node) ? node : Object.values(node)) {
    const found = findClientHello(child);
    if (found) return found;
  }
  return null;
}

function tshark(args: readonly string[]): string {
  return execFileSync('tshark', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 64 * 1024 * 1024 });
}

/** Wraps the bytes in a TCP segment to port 443 (text2pcap) and lets tshark dissect it. */
function dissect(bytes: Buffer, dir: string, name: string): Dissection {
  const dump = join(dir, `${name}.txt`);
  const pcap = join(dir, `${name}.pcapng`);
  const lines: string[] = [];
  for (let i = 0; i < bytes.length; i += 16) lines.push(`${i.toString(16).padStart(6, '0')} ${[...bytes.subarray(i, i + 16)].map((b) => b.toString(16).padStart(2, '0')).join(' ')}`);
  writeFileSync(dump, `${lines.join('\n')}\n`);
  execFileSync('text2pcap', ['-q', '-T', '50000,443', dump, pcap], { stdio: 'ignore' });
  const filter = ['-r', pcap, '-Y', 'tls.handshake.type == 1'];
  const fields = tshark([...filter, '-T', 'fields', '-e', 'tls.handshake.ja3', '-e', 'tls.handshake.ja3_full']).trim().split('\n');
  if (fields.length !== 1) throw new Error(`${name}: tshark found ${fields.length} ClientHellos`);
  const [ja3Hash, ja3Text] = (fields[0] as string).split('\t');
  if (!ja3Hash || !ja3Text) throw new Error(`${name}: tshark computed no JA3 (fields: ${JSON.stringify(fields[0])})`);
  const hello = findClientHello(JSON.parse(tshark([...filter, '-T', 'json', '--no-duplicate-keys', '-J', 'tls'])) as Json);
  if (!hello) throw new Error(`${name}: no ClientHello in tshark's JSON`);
  // with --no-duplicate-keys, extensions tshark names alike become one array under one key
  const extensionNodes = Object.entries(hello)
    .filter(([k]) => k.startsWith('Extension: '))
    .flatMap(([, v]) => [v].flat());
  const ofType = (type: number) => extensionNodes.filter((e) => valuesOf(e, 'tls.handshake.extension.type')[0] === String(type));
  return {
    ja3: ja3Hash,
    ja3Text,
    legacyVersion: Number(hello['tls.handshake.version']),
    supportedVersions: valuesOf(ofType(43), 'tls.handshake.extensions.supported_version').map(Number),
    cipherSuites: valuesOf(hello['tls.handshake.ciphersuites'] ?? null, 'tls.handshake.ciphersuite').map(Number),
    extensions: extensionNodes.map((e) => Number(valuesOf(e, 'tls.handshake.extension.type')[0])),
    serverName: valuesOf(ofType(0), 'tls.handshake.extensions_server_name')[0] ?? null,
    firstAlpn: valuesOf(ofType(16), 'tls.handshake.extensions_alpn_str')[0] ?? null,
    signatureAlgorithms: valuesOf(ofType(13), 'tls.handshake.sig_hash_alg').map(Number),
  };
}

// RFC 8701 §2 lists them: 0x0A0A, 0x1A1A … 0xFAFA.
const greaseValues = new Set(Array.from({ length: 16 }, (_, i) => i * 0x1010 + 0x0a0a));

/**
 * JA4 from tshark's fields, written from FoxIO's technical_details/JA4.md
 * rather than from src/edge/fingerprints.ts, so that the two can disagree.
 */
function ja4OfDissection(d: Dissection): string {
  const real = (values: readonly number[]) => values.filter((v) => !greaseValues.has(v));
  const hex = (v: number) => v.toString(16).padStart(4, '0');
  const hash = (text: string) => createHash('sha256').update(text).digest('hex').slice(0, 12);
  const twoDigits = (n: number) => (n > 99 ? '99' : n < 10 ? `0${n}` : String(n));
  const versionCodes = new Map([[0x0304, '13'], [0x0303, '12'], [0x0302, '11'], [0x0301, '10'], [0x0300, 's3'], [0x0002, 's2']]);
  const offered = real(d.supportedVersions);
  const version = offered.length > 0 ? offered.reduce((a, b) => (b > a ? b : a)) : d.legacyVersion;
  const ciphers = real(d.cipherSuites);
  const extensions = real(d.extensions);
  let alpn = '00';
  if (d.firstAlpn) {
    const first = d.firstAlpn.charCodeAt(0);
    const last = d.firstAlpn.charCodeAt(d.firstAlpn.length - 1);
    const alnum = (c: number) => (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
    const h = Buffer.from(d.firstAlpn, 'latin1').toString('hex');
    alpn = alnum(first) && alnum(last) ? String.fromCharCode(first, last) : `${h[0]}${h[h.length - 1]}`;
  }
  const a = `t${versionCodes.get(version) ?? '00'}${extensions.includes(0) ? 'd' : 'i'}${twoDigits(ciphers.length)}${twoDigits(extensions.length)}${alpn}`;
  const b = ciphers.length > 0 ? hash(ciphers.map(hex).sort().join(',')) : '000000000000';
  const sortedExtensions = extensions.filter((e) => e !== 0 && e !== 16).map(hex).sort().join(',');
  const sigalgs = real(d.signatureAlgorithms).map(hex).join(',');
  const c = sortedExtensions === '' ? '000000000000' : hash(sigalgs === '' ? sortedExtensions : `${sortedExtensions}_${sigalgs}`);
  return `${a}_${b}_${c}`;
}

interface FixtureEntry {
  readonly file: string;
  readonly client: string;
  readonly ja4: string;
  readonly ja3: string;
  readonly ja3Text: string;
  readonly sni: string | null;
  readonly capturedAt: string;
}

const work = mkdtempSync(join(tmpdir(), 'hello-pcaps-'));
const captured: { entry: FixtureEntry; bytes: Buffer }[] = [];
const ja3Disagreements: string[] = [];
try {
  console.log(versionOf(['tshark', '--version']));
  for (const client of clients) {
    const version = versionOf(client.version);
    const bytes = await capture(client);
    const parsed = parseClientHello(bytes);
    if (parsed.kind !== 'hello') throw new Error(`${client.name}: the captured bytes no longer parse (${parsed.kind})`);
    const d = dissect(bytes, work, client.name);
    const ours = { ja4: ja4(parsed.hello), ja3: ja3(parsed.hello) };
    const theirs = ja4OfDissection(d);
    if (ours.ja4 !== theirs) throw new Error(`${client.name}: JA4 disagrees: src/edge/fingerprints.ts says ${ours.ja4}, tshark's fields give ${theirs}`);
    if (d.serverName !== parsed.hello.serverName) throw new Error(`${client.name}: SNI disagrees: parser ${parsed.hello.serverName}, tshark ${d.serverName}`);
    if (ours.ja3.hash !== d.ja3 || ours.ja3.text !== d.ja3Text) {
      ja3Disagreements.push(`${client.name}:\n  tshark: ${d.ja3} ${d.ja3Text}\n  ours:   ${ours.ja3.hash} ${ours.ja3.text}`);
    }
    const entry: FixtureEntry = { file: `${client.name}.bin`, client: version, ja4: ours.ja4, ja3: d.ja3, ja3Text: d.ja3Text, sni: d.serverName, capturedAt: new Date().toISOString() };
    captured.push({ entry, bytes });
    console.log(`${client.name}: ${bytes.length} bytes, ${entry.ja4}, JA3 ${entry.ja3} (${version})`);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}

// replace the whole set, so a client dropped from the table leaves no stale fixture behind
mkdirSync(fixturesDir, { recursive: true });
for (const f of readdirSync(fixturesDir)) if (f.endsWith('.bin') || f === 'index.json') rmSync(join(fixturesDir, f));
for (const { entry, bytes } of captured) writeFileSync(join(fixturesDir, entry.file), bytes);
writeFileSync(join(fixturesDir, 'index.json'), `${JSON.stringify(captured.map((c) => c.entry), null, 2)}\n`);
console.log(`wrote ${captured.length} fixtures to ${fixturesDir}`);
if (ja3Disagreements.length > 0) {
  console.error(`JA3 of src/edge/fingerprints.ts disagrees with tshark (index.json keeps tshark's):\n${ja3Disagreements.join('\n')}`);
  process.exitCode = 1;
}
