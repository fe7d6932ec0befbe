import type { X509Certificate } from 'node:crypto';

/** Told of an intermediate this process saw in a verified chain for the first time. */
export type IntermediateListener = (cert: X509Certificate) => void;

/**
 * CA certificates clients sent in verified chains, so that the chain of a
 * resumed session (OpenSSL keeps only the leaf) can be rebuilt for the
 * revocation check. Only used through signature checks up to a configured
 * root (`verifiedChain` in client-certificate.ts), so nothing placed here can
 * create trust. Bounded: few intermediates exist, the oldest go first.
 *
 * One per process, as before the cluster: with `state.backend: redis`,
 * `SharedIntermediates` listens here to share what this process saw, and
 * adds what other instances saw (after its own checks) with `learn`.
 */
export class KnownIntermediates {
  readonly #certs = new Map<string, X509Certificate>();
  readonly #listeners = new Set<IntermediateListener>();

  constructor(private readonly max = 1_000) {}

  /** An intermediate of a chain OpenSSL and `verifiedChain` accepted here; listeners hear of it when it is new. */
  remember(cert: X509Certificate): void {
    if (!this.#add(cert)) return;
    for (const listener of this.#listeners) listener(cert);
  }

  /** An intermediate another instance saw, already checked by the caller; listeners are not told (it came from them). */
  learn(cert: X509Certificate): boolean {
    return this.#add(cert);
  }

  has(fingerprint256: string): boolean {
    return this.#certs.has(fingerprint256);
  }

  values(): IterableIterator<X509Certificate> {
    return this.#certs.values();
  }

  /** Calls `listener` for every intermediate `remember` adds from now on; returns the function that stops it. */
  onRemembered(listener: IntermediateListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #add(cert: X509Certificate): boolean {
    if (this.#certs.has(cert.fingerprint256)) return false;
    this.#certs.set(cert.fingerprint256, cert);
    if (this.#certs.size > this.max) this.#certs.delete(this.#certs.keys().next().value as string);
    return true;
  }
}

/** The certificate among `candidates` that issued `cert`: its subject names `cert`'s issuer and its key verifies `cert`'s signature. */
export function issuerAmong(cert: X509Certificate, candidates: Iterable<X509Certificate>): X509Certificate | undefined {
  for (const c of candidates) if (c.subject === cert.issuer && cert.verify(c.publicKey)) return c;
  return undefined;
}

/** This process's intermediates, shared by every site (each use checks the site's own roots). */
export const knownIntermediates = new KnownIntermediates();
