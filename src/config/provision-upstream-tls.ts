import { rootCertificates } from 'node:tls';
import { loadCertificatePair } from '../pki/index.js';
import { readCertificateBundle } from './certificate-bundle.js';
import type { ProvisionContext } from './provision-context.js';
import type { RawUpstreamTls } from './schema.js';
import type { CertificatePair, UpstreamTls } from './types.js';

/**
 * A route's `upstreamTls` (at `at`, `sites[i].routes[j].upstreamTls`; `{}`
 * when not given): the public roots plus `ca`, the name to verify, and the
 * client certificate presented to the upstream.
 */
export function provisionUpstreamTls(raw: RawUpstreamTls, at: string, ctx: ProvisionContext): UpstreamTls {
  const ca = [...rootCertificates];
  if (raw.ca !== undefined) {
    const bundle = readCertificateBundle(ctx, `${at}.ca`, raw.ca, {
      unreadable: "the PEM CA certificate file of the upstream's TLS",
      empty: "the upstream's CA certificate in PEM",
    });
    ca.push(...bundle.certificates.map((c) => c.pem));
  }
  let clientCertificate: CertificatePair | undefined;
  if ((raw.cert === undefined) !== (raw.key === undefined)) {
    ctx.issue(at, `give both cert: and key: for the client certificate presented to the upstream; ${raw.cert === undefined ? 'cert' : 'key'} is missing`);
  } else if (raw.cert !== undefined && raw.key !== undefined) {
    const loaded = loadCertificatePair(ctx.file(raw.cert), ctx.file(raw.key), 'client');
    if (loaded.ok) clientCertificate = loaded.certificate;
    else for (const p of loaded.problems) ctx.issue(`${at}.${p.field}`, p.message);
  }
  return { ca, serverName: raw.serverName?.toLowerCase(), clientCertificate };
}
