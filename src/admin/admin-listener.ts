import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import { hostname } from 'node:os';
import { isIP, type AddressInfo } from 'node:net';
import type { SecureContextOptions } from 'node:tls';
import { readFileSync } from 'node:fs';
import { formatHostPort, type ListenAddress, type TlsProfile } from '../config/index.js';
import { bindServer } from '../edge/index.js';
import { reasonCatalog, type Reason } from '../errors.js';
import { CaStore, ensureIssuedCertificate, type CaReplica, type IssuedFiles } from '../pki/index.js';
import { adminCertificateFiles } from '../state/index.js';
import type { Logger, SupervisorMetrics } from '../observe/index.js';
import { profileOptions } from '../tls/index.js';
import { carriesAdminToken, ensureAdminToken, type AdminToken } from './admin-token.js';
import { EnrollEndpoint, maxCsrBytes } from './enroll-endpoint.js';

export interface AdminListenerOptions {
  readonly address: ListenAddress;
  readonly dataDir: string;
  readonly profile: TlsProfile;
  readonly log: Logger;
  readonly metrics: SupervisorMetrics;
  /** The Prometheus text of the whole instance (this process and its workers). */
  readonly scrape: () => Promise<string>;
  /** With state.backend: redis, the cluster's CA (enrollments are recorded there); the local one without. */
  readonly caReplica?: CaReplica | null;
}

/** The admin listener's own certificate: from the built-in CA, like `internal: true` site certificates, and renewed by the same rule. */
const certificateLifetimeDays = 90;

/** Names the admin certificate covers: the configured host, or this machine's names when it listens on every address. */
function adminHosts(host: string): string[] {
  if (host === '0.0.0.0' || host === '::' || host === '') return ['localhost', '127.0.0.1', '::1', hostname().toLowerCase()];
  if (host === '127.0.0.1' || host === '::1') return [host, 'localhost'];
  return [isIP(host) ? host : host.toLowerCase()];
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function refuse(res: ServerResponse, reason: Reason, detail: string): void {
  const status = reasonCatalog[reason].status;
  sendJson(res, status, { error: STATUS_CODES[status], reason, detail });
}

/** The body up to `limit` bytes, or null once it is larger (the rest is not read). */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.pause();
        resolve(null);
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/**
 * The admin listener (`listen.admin`): HTTPS with the TLS profile of the
 * config and a certificate from the built-in CA (clients trust
 * `dataDir/ca/ca.pem`). Every endpoint needs the admin token
 * (`Authorization: Bearer`, from `dataDir/admin/token`) except enrollment,
 * which a partner authenticates with its single-use enrollment token.
 *   GET  /metrics     Prometheus metrics of the instance (admin token)
 *   POST /v1/enroll   a CSR in, a client certificate chain out (enrollment token)
 */
export class AdminListener {
  readonly #server: Server;
  readonly #opts: AdminListenerOptions;
  readonly #token: AdminToken;
  readonly #enroll: EnrollEndpoint;
  readonly #store: CaStore;
  readonly #files: IssuedFiles;
  #address: AddressInfo | null = null;

  private constructor(opts: AdminListenerOptions, store: CaStore, token: AdminToken, files: IssuedFiles) {
    this.#opts = opts;
    this.#store = store;
    this.#token = token;
    this.#files = files;
    this.#enroll = new EnrollEndpoint(store, opts.log, opts.metrics);
    this.#server = createServer({ ...this.#contextOptions(), maxHeaderSize: 8192 }, (req, res) => void this.#answer(req, res));
    this.#server.headersTimeout = 10_000;
    this.#server.requestTimeout = 30_000;
    this.#server.keepAliveTimeout = 5_000;
  }

  /** Issues (or reuses) the listener's certificate and the admin token, then listens. */
  static async open(opts: AdminListenerOptions): Promise<AdminListener> {
    const store = await CaStore.open(opts.dataDir, { replica: opts.caReplica ?? null });
    const files = { ...adminCertificateFiles(opts.dataDir), hosts: adminHosts(opts.address.host), lifetimeDays: certificateLifetimeDays };
    await ensureIssuedCertificate(store.ca, files);
    const listener = new AdminListener(opts, store, ensureAdminToken(opts.dataDir), files);
    const address = await bindServer(listener.#server, opts.address, 'listen.admin');
    listener.#address = address;
    const where = formatHostPort(opts.address.host, address.port);
    opts.log.info({ event: 'admin_listening', admin: where, tokenFile: listener.#token.file, ca: store.ca.certFile }, `admin API on https://${where} (token in ${listener.#token.file}, CA ${store.ca.certFile})`);
    return listener;
  }

  get address(): AddressInfo {
    return this.#address as AddressInfo;
  }

  /** Renews the listener's certificate once two thirds of its lifetime have passed; returns the file when it did. */
  async renewCertificate(): Promise<string[]> {
    if (!(await ensureIssuedCertificate(this.#store.ca, this.#files))) return [];
    this.#server.setSecureContext(this.#contextOptions());
    return [this.#files.certFile];
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  #contextOptions(): SecureContextOptions {
    const caPem = readFileSync(this.#store.ca.certFile, 'utf8');
    return { ...profileOptions(this.#opts.profile), cert: readFileSync(this.#files.certFile, 'utf8') + caPem, key: readFileSync(this.#files.keyFile, 'utf8') };
  }

  async #answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    res.setHeader('cache-control', 'no-store');
    res.setHeader('x-content-type-options', 'nosniff');
    res.setHeader('strict-transport-security', 'max-age=31536000');
    const path = (req.url ?? '/').split('?')[0];
    const remoteAddress = req.socket.remoteAddress ?? '';
    try {
      if (path === '/v1/enroll') {
        if (req.method !== 'POST') return refuse(res, 'method_not_allowed', 'POST a PKCS#10 certificate request to /v1/enroll');
        const body = await readBody(req, maxCsrBytes);
        if (!body) {
          res.setHeader('connection', 'close');
          return refuse(res, 'body_too_large', `a certificate request is at most ${maxCsrBytes} bytes`);
        }
        const outcome = await this.#enroll.enroll(req.headers.authorization, body, remoteAddress);
        if (!outcome.ok) return refuse(res, outcome.reason, outcome.detail);
        res.writeHead(200, { 'content-type': 'application/pem-certificate-chain', 'content-length': Buffer.byteLength(outcome.chainPem) });
        res.end(outcome.chainPem);
        return;
      }
      if (!carriesAdminToken(req.headers.authorization, this.#token)) {
        this.#opts.log.warn({ event: 'admin_unauthorized', path, remoteAddress }, `admin request for ${path} from ${remoteAddress} without the admin token`);
        res.setHeader('www-authenticate', 'Bearer realm="portcullis-admin"');
        return refuse(res, 'admin_unauthorized', `send Authorization: Bearer with the token in ${this.#token.file}`);
      }
      if (path === '/metrics' && (req.method === 'GET' || req.method === 'HEAD')) {
        const text = await this.#opts.scrape();
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(text) });
        res.end(req.method === 'HEAD' ? undefined : text);
        return;
      }
      refuse(res, 'no_route', `the admin API has GET /metrics and POST /v1/enroll`);
    } catch (err) {
      this.#opts.log.error({ event: 'admin_error', path, error: (err as Error).message }, `admin request for ${path} failed`);
      if (!res.headersSent) refuse(res, 'internal_error', 'the log has the details');
      else res.destroy();
    }
  }
}
