import { createHash, type X509Certificate } from 'node:crypto';
import { readCertificateBundle } from './certificate-bundle.js';
import type { ProvisionContext } from './provision-context.js';
import { provisionRevocation } from './provision-revocation.js';
import type { RawClientAuth } from './schema.js';
import type { ClientAuth } from './types.js';

/** A site's `clientAuth` (at `at`, `sites[i].clientAuth`): its CA list, read and checked whole, and its revocation policy. */
export function provisionClientAuth(raw: RawClientAuth, at: string, ctx: ProvisionContext): ClientAuth {
  const cas = clientCasOf(raw.ca, at, ctx);
  if (raw.refuseAt === 'handshake' && raw.mode !== 'require') ctx.issue(`${at}.refuseAt`, 'refusing in the handshake needs mode: require (with optional, routes decide after the handshake); set mode: require, or remove refuseAt');
  const revocation = provisionRevocation(raw, at, ctx, cas.complete ? cas.certs : null);
  const key = createHash('sha256')
    .update([raw.mode, raw.refuseAt, raw.verifyDepth, ...cas.certs.map((c) => c.fingerprint256), JSON.stringify(revocation)].join('|'))
    .digest('hex')
    .slice(0, 16);
  return { mode: raw.mode, refuseAt: raw.refuseAt, caFiles: raw.ca.map((p) => ctx.file(p)), caPem: cas.pem, caCerts: cas.certs, verifyDepth: raw.verifyDepth, revocation, key };
}

/**
 * The CA certificates of `clientAuth.ca`, PEM and parsed. `complete` is false
 * when an entry has a problem: the list is then partial, and checks against
 * it (a root for every intermediate, the issuers of CRLs) would only add
 * follow-on noise.
 */
function clientCasOf(paths: readonly string[], at: string, ctx: ProvisionContext): { pem: string[]; certs: X509Certificate[]; complete: boolean } {
  const pem: string[] = [];
  const certs: X509Certificate[] = [];
  let complete = true;
  paths.forEach((p, k) => {
    const bundle = readCertificateBundle(ctx, `${at}.ca[${k}]`, p, {
      unreadable: 'the CA certificate file that issues your client certificates',
      empty: 'the client CA certificate in PEM',
    });
    if (!bundle.complete) complete = false;
    for (const { pem: certPem, cert } of bundle.certificates) {
      if (!cert.ca) {
        complete = false;
        ctx.issue(`${at}.ca[${k}]`, `${bundle.file} holds ${cert.subject.split('\n').join(', ')}, which is not a CA certificate; list the CA that issued the client certificates, not a client certificate`);
        continue;
      }
      pem.push(certPem);
      certs.push(cert);
    }
  });
  if (complete) checkRootsListed(certs, at, ctx);
  return { pem, certs, complete };
}

/**
 * OpenSSL accepts a chain only up to a self-signed root in the list: an
 * intermediate listed without its issuers would silently admit nobody.
 */
function checkRootsListed(certs: readonly X509Certificate[], at: string, ctx: ProvisionContext): void {
  certs.forEach((ca) => {
    let cert = ca;
    for (let hops = 0; cert.subject !== cert.issuer && hops < 10; hops++) {
      const issuer = certs.find((c) => c.subject === cert.issuer && cert.verify(c.publicKey));
      if (!issuer) {
        ctx.issue(
          `${at}.ca`,
          `${cert.subject.split('\n').join(', ')} is issued by ${cert.issuer.split('\n').join(', ')}, which is not listed; list the root CA too (OpenSSL needs the whole path to a root). To admit only one intermediate's clients, add an allow-list to the routes`,
        );
        return;
      }
      cert = issuer;
    }
  });
}
