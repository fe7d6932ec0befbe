import { X509Certificate } from 'node:crypto';
import type { Logger } from '../observe/index.js';
import type { RedisLink } from '../state/index.js';
import { issuerAmong, knownIntermediates, type KnownIntermediates } from './known-intermediates.js';

/** What the check of a shared intermediate needs of the config: every site's client CAs (trust does not import config; `Config` fits). */
export interface ClientCaSource {
  readonly sites: readonly { readonly clientAuth: { readonly caCerts: readonly X509Certificate[] } | null }[];
}

/** Redis: a hash fingerprint → DER (base64) and a sorted set fingerprint → when it was shared, for the bound. */
const hashName = 'client-intermediates';
const orderName = 'client-intermediates-order';
/** Pub/sub: the DER (base64) of each intermediate as it is shared. */
const channel = 'client-intermediates';
/** The cluster keeps this many, the most recently shared (an instance keeps 1,000 of its own as well). */
const maxShared = 1_000;
/** Intermediates seen during an outage, sent once Redis is back. */
const maxUnsent = 1_000;
const maxRefused = 1_000;

// one atomic step: store, note when, and drop the oldest beyond the bound (ZPOPMIN: Redis ≥ 5, Valkey)
const addScript = `redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if excess > 0 then
  local old = redis.call('ZPOPMIN', KEYS[2], excess)
  for i = 1, #old, 2 do redis.call('HDEL', KEYS[1], old[i]) end
end
return 1`;

/**
 * The intermediates seen, shared by every instance of a cluster
 * (`state.backend: redis`), so that a session made on instance A and resumed
 * on B (whose ticket carries the client's leaf but not its chain) can have
 * its chain rebuilt on B and checked for revocation.
 *
 * What this process sees in a verified handshake is stored in Redis and
 * published; what others publish, and a full read at start, after a reconnect
 * and after a config change, is learned — but never trusted because it is in
 * Redis: a certificate is learned only when it is a CA certificate, not
 * expired, not self-signed, and signed by a CA of some site's `clientAuth.ca`
 * (directly or through intermediates learned that way). Each use then checks
 * the signatures up to the site's own roots, as for any intermediate.
 *
 * On failure: Redis unreachable → this process keeps what it knows, queues
 * what it saw (bounded) and sends it after the reconnect.
 */
export class SharedIntermediates {
  readonly #link: RedisLink;
  readonly #log: Logger;
  readonly #known: KnownIntermediates;
  #anchors: readonly X509Certificate[] = [];
  #anchorKey: string | null = null;
  readonly #unsent = new Map<string, X509Certificate>();
  readonly #refused = new Set<string>();
  #stops: (() => void)[] = [];
  #stopped = false;

  constructor(link: RedisLink, log: Logger, known: KnownIntermediates = knownIntermediates) {
    this.#link = link;
    this.#log = log;
    this.#known = known;
  }

  /** Takes the config's client CAs; the first call starts sharing, a change of CAs reads the cluster's set again. */
  apply(config: ClientCaSource): void {
    const anchors = config.sites.flatMap((s) => s.clientAuth?.caCerts ?? []);
    const key = anchors
      .map((c) => c.fingerprint256)
      .sort()
      .join(',');
    const first = this.#anchorKey === null;
    const changed = key !== this.#anchorKey;
    this.#anchors = anchors;
    this.#anchorKey = key;
    if (first) void this.#start();
    else if (changed) void this.#readAll();
  }

  stop(): void {
    this.#stopped = true;
    for (const stop of this.#stops) stop();
    this.#stops = [];
  }

  async #start(): Promise<void> {
    this.#stops.push(this.#known.onRemembered((cert) => void this.#share(cert)));
    this.#stops.push(this.#link.onLink((up) => up && void this.#recover()));
    try {
      const unsubscribe = await this.#link.subscribe(channel, (message) => this.#admit([message]));
      if (this.#stopped) unsubscribe();
      else this.#stops.push(unsubscribe);
    } catch (err) {
      this.#log.warn({ event: 'client_intermediates_sync_failed', error: (err as Error).message }, 'could not subscribe to the intermediates other instances see; reading them again after a reconnect');
    }
    // after subscribing: what was shared before is read, what comes after is heard
    await this.#readAll();
  }

  async #share(cert: X509Certificate): Promise<void> {
    const der = cert.raw.toString('base64');
    try {
      await this.#link.redis.eval(addScript, 2, this.#link.key(hashName), this.#link.key(orderName), cert.fingerprint256, der, Date.now(), maxShared);
      await this.#link.publish(channel, der);
      this.#unsent.delete(cert.fingerprint256);
      this.#log.info({ event: 'client_intermediate_shared', subject: cert.subject, fingerprint: cert.fingerprint256 }, 'a client CA certificate seen here is shared with the cluster');
    } catch {
      // sent again after the reconnect
      this.#unsent.set(cert.fingerprint256, cert);
      if (this.#unsent.size > maxUnsent) this.#unsent.delete(this.#unsent.keys().next().value as string);
    }
  }

  async #recover(): Promise<void> {
    for (const cert of [...this.#unsent.values()]) await this.#share(cert);
    await this.#readAll();
  }

  async #readAll(): Promise<void> {
    let all: Record<string, string>;
    try {
      all = await this.#link.redis.hgetall(this.#link.key(hashName));
    } catch (err) {
      // during an outage the link has said so; read again once it is back
      if (this.#link.up) this.#log.warn({ event: 'client_intermediates_sync_failed', error: (err as Error).message }, 'could not read the intermediates other instances saw; keeping those known here');
      return;
    }
    this.#admit(Object.entries(all).flatMap(([fingerprint, der]) => (this.#known.has(fingerprint) ? [] : [der])));
  }

  /** Learns each certificate (DER, base64) that passes the checks; one whose issuer is among the others is taken once that one is. */
  #admit(encoded: readonly string[]): void {
    if (this.#stopped) return;
    let pending: X509Certificate[] = [];
    for (const der of encoded) {
      try {
        const cert = new X509Certificate(Buffer.from(der, 'base64'));
        if (!this.#known.has(cert.fingerprint256)) pending.push(cert);
      } catch (err) {
        this.#refuse(der.slice(0, 32), null, `unreadable: ${(err as Error).message}`);
      }
    }
    for (let progress = true; pending.length > 0 && progress; ) {
      progress = false;
      pending = pending.filter((cert) => {
        const problem = this.#problem(cert);
        if (problem === 'no issuer yet') return true;
        if (problem) this.#refuse(cert.fingerprint256, cert.subject, problem);
        else {
          this.#known.learn(cert);
          progress = true;
          this.#log.info({ event: 'client_intermediate_learned', subject: cert.subject, fingerprint: cert.fingerprint256 }, 'learned a client CA certificate another instance saw');
        }
        return false;
      });
    }
    // expected where instances serve different sites: told once, at info
    for (const cert of pending) this.#refuse(cert.fingerprint256, cert.subject, "signed by no CA of this instance's clientAuth.ca", 'info');
  }

  /** Why `cert` may not be learned; null when it may. */
  #problem(cert: X509Certificate): string | null {
    if (!cert.ca) return 'not a CA certificate';
    if (cert.subject === cert.issuer) return 'self-signed: a root is trusted only when clientAuth.ca lists it';
    if (Date.parse(cert.validTo) < Date.now()) return `expired on ${cert.validTo}`;
    return issuerAmong(cert, this.#anchors) || issuerAmong(cert, this.#known.values()) ? null : 'no issuer yet';
  }

  #refuse(fingerprint: string, subject: string | null, why: string, level: 'warn' | 'info' = 'warn'): void {
    if (this.#refused.has(fingerprint)) return;
    this.#refused.add(fingerprint);
    if (this.#refused.size > maxRefused) this.#refused.delete(this.#refused.values().next().value as string);
    this.#log[level]({ event: 'client_intermediate_refused', fingerprint, subject, why }, `ignored a client CA certificate from the cluster's state: ${why}`);
  }
}
