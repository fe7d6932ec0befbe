import type { X509Certificate } from 'node:crypto';
import type { RevocationPolicy } from './revocation-policy.js';
import type { Logger, Metrics } from '../observe/index.js';
import { localAnswers, type AnswerSharing } from '../state/index.js';
import { distributionPointsOf } from './crl.js';
import { CrlStore, type CrlSourceSpec } from './crl-store.js';
import { DenyList, type DenyEntry } from './deny-list.js';
import { rfc4514 } from './identity.js';
import { OcspCache } from './ocsp-cache.js';
import { ocspResponderOf } from './ocsp.js';

export type RevocationSource = 'crl' | 'ocsp' | 'deny-list';

/** The one revocation decision on a client certificate chain. */
export type RevocationDecision =
  | { readonly outcome: 'good' }
  | { readonly outcome: 'revoked'; readonly source: RevocationSource; readonly certificate: CertificateRef; readonly detail: string }
  /** `failClosed`: refused even under onRevocationUnavailable: allow (what is missing is a check the operator did not make optional). */
  | { readonly outcome: 'unavailable'; readonly detail: string; readonly failClosed?: boolean };

/** The certificate a decision is about, as the logs name it. */
export interface CertificateRef {
  readonly subject: string;
  readonly issuer: string;
  readonly serial: string;
  /** Position in the chain: 0 is the client's own certificate. */
  readonly depth: number;
}

/** The verified chain of a connection: leaf first, ending at the configured root; null when it could not be rebuilt (a resumed session). */
export interface ChainToCheck {
  readonly leaf: X509Certificate;
  readonly chain: readonly X509Certificate[] | null;
}

const good: RevocationDecision = Object.freeze({ outcome: 'good' });
const unknownChain = 'the session was resumed and the CA certificates above the client certificate are not known to this process; list the intermediates in clientAuth.ca';

function refOf(cert: X509Certificate, depth: number): CertificateRef {
  return { subject: rfc4514(cert.subject), issuer: rfc4514(cert.issuer), serial: cert.serialNumber.toUpperCase(), depth };
}

/** Distribution points are read from a certificate once, not on every connection that presents it. */
const distributionPoints = new WeakMap<X509Certificate, readonly string[]>();
function cachedDistributionPoints(cert: X509Certificate): readonly string[] {
  let urls = distributionPoints.get(cert);
  if (!urls) {
    try {
      urls = distributionPointsOf(cert);
    } catch {
      urls = [];
    }
    distributionPoints.set(cert, urls);
  }
  return urls;
}

/**
 * Decides whether a verified client certificate chain is revoked, from the
 * deny list, CRLs (configured and distribution points) and OCSP, for every
 * certificate below the trust anchor. Revoked when any source says so;
 * good when each certificate has at least one fresh "good" answer; otherwise
 * unavailable, and the site's policy decides. Synchronous when every answer
 * is at hand (the common case); a promise when a CRL is still loading or an
 * OCSP answer must be fetched. Never rejects.
 */
export class RevocationChecker {
  readonly crls: CrlStore;
  readonly #ocsp: OcspCache;
  #deny = DenyList.empty;

  /** `answers`: where CRLs and OCSP answers come from (the origin, or first the cluster's verified copies). */
  constructor(log: Logger, metrics: Metrics, answers: AnswerSharing = localAnswers) {
    this.crls = new CrlStore(log, metrics, answers);
    this.#ocsp = new OcspCache(metrics, answers);
  }

  get denyList(): DenyList {
    return this.#deny;
  }

  setDenyList(entries: readonly DenyEntry[]): DenyList {
    this.#deny = new DenyList(entries);
    return this.#deny;
  }

  /** The CRLs every site's policy names, with the CAs that may sign each. */
  configure(policies: readonly { readonly revocation: RevocationPolicy | null; readonly caCerts: readonly X509Certificate[] }[]): void {
    const specs = new Map<string, CrlSourceSpec>();
    for (const p of policies) {
      for (const crl of p.revocation?.crls ?? []) {
        const known = specs.get(crl.location);
        specs.set(crl.location, { kind: crl.kind, location: crl.location, issuers: [...(known?.issuers ?? []), ...p.caCerts] });
      }
    }
    this.crls.configure([...specs.values()]);
  }

  /**
   * Only the deny list, which applies to every mutual-TLS site whatever its
   * policy. It may name a CA of the chain: when a resumed session's chain is
   * not known in this process, only the client's own certificate can be
   * checked, and the connection is refused rather than let a blocked CA through.
   */
  denied(target: ChainToCheck): RevocationDecision | null {
    if (this.#deny.size === 0) return null;
    const certs = target.chain ?? [target.leaf];
    for (let depth = 0; depth < certs.length; depth++) {
      const entry = this.#deny.match(certs[depth] as X509Certificate);
      if (entry) {
        const how = 'fingerprint' in entry ? `fingerprint ${entry.fingerprint}` : `serial ${entry.serial} of ${entry.issuer}`;
        return { outcome: 'revoked', source: 'deny-list', certificate: refOf(certs[depth] as X509Certificate, depth), detail: `on the deny list by ${how}${entry.note ? ` (${entry.note})` : ''}` };
      }
    }
    return target.chain ? null : { outcome: 'unavailable', detail: `${unknownChain}; the deny list cannot be checked against them`, failClosed: true };
  }

  check(target: ChainToCheck, policy: RevocationPolicy | null): RevocationDecision | Promise<RevocationDecision> {
    const denied = this.denied(target);
    if (denied) return denied;
    if (!policy) return good;
    const first = this.#evaluate(target, policy, false);
    if (!Array.isArray(first)) return first;
    return Promise.all(first).then(() => this.#evaluate(target, policy, true) as RevocationDecision);
  }

  stop(): void {
    this.crls.stop();
  }

  /** A decision, or (on the first pass only) what must be waited for before one can be made. */
  #evaluate(target: ChainToCheck, policy: RevocationPolicy, final: boolean): RevocationDecision | Promise<void>[] {
    const chain = target.chain;
    if (!chain) return { outcome: 'unavailable', detail: unknownChain };
    const waits: Promise<void>[] = [];
    const missing: string[] = [];
    // the last certificate is the trust anchor: nobody revokes a root by CRL or OCSP
    for (let depth = 0; depth < chain.length - 1; depth++) {
      const cert = chain[depth] as X509Certificate;
      const issuer = chain[depth + 1] as X509Certificate;
      const problems: string[] = [];
      let fresh = false;
      if (policy.distributionPoints || policy.crls.length > 0) {
        const points = cachedDistributionPoints(cert);
        const keys = policy.crls.map((c) => c.location);
        if (policy.distributionPoints) for (const url of points) keys.push(this.crls.distributionPoint(url, issuer));
        const crl = this.crls.lookup(cert, issuer, points, keys);
        if (crl.verdict === 'revoked') return { outcome: 'revoked', source: 'crl', certificate: refOf(cert, depth), detail: `listed in the CRL from ${crl.source}` };
        if (crl.verdict === 'good') fresh = true;
        else {
          if (crl.pending && !final) waits.push(crl.pending);
          problems.push(...crl.problems);
          if (crl.problems.length === 0 && !crl.pending) {
            problems.push(`no CRL of ${rfc4514(issuer.subject)} among ${keys.length ? keys.join(', ') : 'the sources (crl: is empty and the certificate names no distribution point)'}`);
          }
        }
      }
      if (policy.ocsp) {
        // a configured responder answers for the client certificates; a CA above them is asked where it says
        const url = (depth === 0 ? policy.ocspResponder : null) ?? ocspResponderOf(cert);
        const known = url ? this.#ocsp.known(cert, issuer) : null;
        if (!url) problems.push('no OCSP responder (the certificate names none and clientAuth.ocspResponder is not set)');
        else if (known?.answer?.status === 'revoked') {
          const at = known.answer.revokedAt ? ` at ${known.answer.revokedAt.toISOString()}` : '';
          return { outcome: 'revoked', source: 'ocsp', certificate: refOf(cert, depth), detail: `OCSP responder ${url} says revoked${at}${known.answer.revocationReason ? ` (${known.answer.revocationReason})` : ''}` };
        } else if (known?.answer?.status === 'good') fresh = true;
        else if (known) problems.push(known.problem ?? `OCSP responder ${url} answered unknown`);
        else if (!final) waits.push(this.#ocsp.fetch(cert, issuer, url));
        else problems.push(`OCSP responder ${url} gave no answer`);
      }
      if (!fresh) missing.push(`${rfc4514(cert.subject)} (serial ${cert.serialNumber.toUpperCase()}): ${problems.join('; ') || 'no source answered'}`);
    }
    if (waits.length > 0 && !final) return waits;
    return missing.length ? { outcome: 'unavailable', detail: missing.join(' | ') } : good;
  }
}
