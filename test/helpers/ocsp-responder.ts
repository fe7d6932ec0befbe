import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { queryOcsp, type OcspAnswer } from '../../src/trust/ocsp.js';
import { run } from './clients.js';
import type { Ca, TestPki } from './pki.js';
import type { Scope } from './proxy.js';

export interface OcspResponderOptions {
  /** The certificate and key that sign responses (a delegated responder, or an unrelated CA); default: the CA itself. */
  readonly signer?: { readonly certFile: string; readonly keyFile: string };
  /** Minutes from thisUpdate to nextUpdate; with neither this nor `ndays` responses carry no nextUpdate. */
  readonly nmin?: number;
  readonly ndays?: number;
  /** Name the signer by key hash (responderID byKey) instead of by name. */
  readonly byKey?: boolean;
  /** Include no certificates in responses (the issuer signs; nothing to include). */
  readonly noCerts?: boolean;
  /** Extra `openssl ocsp` arguments, e.g. ['-rsigopt', 'rsa_padding_mode:pss']. */
  readonly args?: readonly string[];
}

export interface OcspResponder {
  readonly url: string;
  readonly port: number;
  /** How many OCSP requests it answered or refused so far. */
  asked(): number;
  /** Stops the responder (idempotent): its port then refuses connections. */
  stop(): Promise<void>;
}

/**
 * A real `openssl ocsp` responder over `ca`'s index (what `pki.revoke` marks),
 * stopped after the test. `openssl ocsp -port` cannot bind a host (it listens
 * on every interface), so the HTTP side is a Node server on 127.0.0.1 that
 * hands each POSTed request to `openssl ocsp` in responder mode (`-reqin` /
 * `-respout`): openssl reads the index and signs every answer.
 */
export async function startOcspResponder(t: Scope, pki: TestPki, ca: Ca, opts: OcspResponderOptions = {}): Promise<OcspResponder> {
  const signer = opts.signer ?? ca;
  const work = mkdtempSync(join(tmpdir(), 'pcl-ocsp-'));
  let sequence = 0;
  let asked = 0;
  const answer = async (request: Buffer): Promise<Buffer> => {
    const base = join(work, String(sequence++));
    writeFileSync(`${base}.req`, request);
    const args = [
      'ocsp', '-index', pki.indexFile(ca), '-CA', ca.certFile, '-rsigner', signer.certFile, '-rkey', signer.keyFile,
      '-reqin', `${base}.req`, '-respout', `${base}.resp`,
      ...(opts.nmin === undefined ? [] : ['-nmin', String(opts.nmin)]),
      ...(opts.ndays === undefined ? [] : ['-ndays', String(opts.ndays)]),
      ...(opts.byKey ? ['-resp_key_id'] : []),
      ...(opts.noCerts ? ['-resp_no_certs'] : []),
      ...(opts.args ?? []),
    ];
    const r = await run('openssl', args, '', 10_000);
    if (r.code !== 0) throw new Error(`openssl ${args.join(' ')} failed:\n${r.stderr}`);
    return readFileSync(`${base}.resp`);
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST') return void res.writeHead(405).end();
      asked++;
      answer(Buffer.concat(chunks)).then(
        (der) => res.writeHead(200, { 'content-type': 'application/ocsp-response' }).end(der),
        (err: Error) => res.writeHead(500).end(err.message),
      );
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  let stopped: Promise<void> | null = null;
  const stop = () =>
    (stopped ??= new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }).then(() => rmSync(work, { recursive: true, force: true })));
  t.after(stop);
  const port = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}/`, port, asked: () => asked, stop };
}

/** Limits for test queries: a local responder answers at once. */
export const testLimits = { timeoutMs: 5_000, maxBytes: 64 * 1024 };

export function certificateOf(file: string): X509Certificate {
  return new X509Certificate(readFileSync(file));
}

/**
 * Asks the responder about the certificate and returns the verified answer,
 * failing unless its status is `status`. Every request re-reads the CA's
 * index, so the answer reflects every `pki.revoke` made before the call.
 */
export async function expectOcspStatus(responder: OcspResponder, certFile: string, issuer: Ca, status: OcspAnswer['status']): Promise<OcspAnswer> {
  const answer = await queryOcsp(certificateOf(certFile), certificateOf(issuer.certFile), responder.url, testLimits);
  if (answer.status !== status) throw new Error(`${responder.url} reports ${answer.status} for ${certFile}, not ${status}`);
  return answer;
}
