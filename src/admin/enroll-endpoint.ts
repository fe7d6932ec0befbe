import { readFileSync } from 'node:fs';
import { PortcullisError, type Reason } from '../errors.js';
import type { CaStore } from '../pki/index.js';
import { CsrError, EnrollmentError, requestedPublicKey } from '../pki/index.js';
import type { Logger, SupervisorMetrics } from '../observe/index.js';

/** The request body an enrollment accepts: a CSR is a few KiB even with an RSA-4096 key. */
export const maxCsrBytes = 16 * 1024;

export type EnrollOutcome = { readonly ok: true; readonly chainPem: string } | { readonly ok: false; readonly reason: Reason; readonly detail: string };

/**
 * `POST /v1/enroll`: a partner spends a single-use enrollment token on a
 * client certificate for the key of its CSR. The token decides the subject,
 * SANs and lifetime; the CSR only proves possession of the key. Answers the
 * chain (leaf, the intermediate if any, the root) as
 * `application/pem-certificate-chain`.
 */
export class EnrollEndpoint {
  constructor(
    private readonly store: CaStore,
    private readonly log: Logger,
    private readonly metrics: SupervisorMetrics,
  ) {}

  async enroll(authorization: string | undefined, body: Buffer, remoteAddress: string): Promise<EnrollOutcome> {
    const token = /^Bearer (\S+)$/i.exec(authorization ?? '')?.[1];
    // the id is the token's public part: safe to log, and it tells the operator which partner tried
    const tokenId = token ? (/^pce_([0-9a-f]{16})_/.exec(token)?.[1] ?? null) : null;
    const outcome = await this.#enroll(token, body);
    if (outcome.ok) {
      this.metrics.enrollments.inc({ result: 'issued' });
      this.log.info({ event: 'client_enrolled', tokenId, remoteAddress, ...outcome.logged }, `issued client certificate ${outcome.logged.serial} to ${outcome.logged.commonName} (enrollment token ${tokenId})`);
      return { ok: true, chainPem: outcome.chainPem };
    }
    this.metrics.enrollments.inc({ result: outcome.reason });
    this.log.warn({ event: 'enrollment_refused', reason: outcome.reason, tokenId, remoteAddress, detail: outcome.detail }, `enrollment refused: ${outcome.detail}`);
    return outcome;
  }

  async #enroll(token: string | undefined, body: Buffer): Promise<(EnrollOutcome & { ok: false }) | { ok: true; chainPem: string; logged: { commonName: string; serial: string; uris: readonly string[]; dns: readonly string[] } }> {
    if (!token) return { ok: false, reason: 'unknown_enrollment_token', detail: 'send the enrollment token as Authorization: Bearer pce_…' };
    try {
      const publicKey = await requestedPublicKey(body);
      const { leaf, record } = await this.store.enroll(token, publicKey);
      // read at each enrollment: in a cluster another instance may have changed the CA (an intermediate added)
      const caPem = this.store.ca.chainPem + readFileSync(this.store.ca.certFile, 'utf8');
      return { ok: true, chainPem: leaf.certPem + caPem, logged: { commonName: record.commonName, serial: leaf.serial, uris: record.uris, dns: record.dns } };
    } catch (err) {
      if (err instanceof EnrollmentError || err instanceof CsrError) return { ok: false, reason: err.reason, detail: err.message };
      // the cluster's Redis could not record it: nothing was handed out and the token is unspent
      if (err instanceof PortcullisError && err.code === 'PCL_STATE_SHARED_WRITE_FAILED') return { ok: false, reason: 'state_unavailable', detail: err.message };
      throw err;
    }
  }
}
