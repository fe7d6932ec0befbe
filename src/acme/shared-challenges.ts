import { randomUUID } from 'node:crypto';
import type { Logger } from '../observe/index.js';
import type { RedisLink } from '../state/index.js';
import type { AcmeChallengeSet } from './challenges.js';

/** An instance's challenge answers, as the cluster keeps them; `expiresAt` ends the answers of an instance that died in the middle of an order. */
interface Entry {
  readonly set: AcmeChallengeSet;
  readonly expiresAt: number;
}

/** A set announced to every instance; each confirms it on the ack channel once its listeners answer with it. */
interface Announcement extends Entry {
  readonly id: string;
  readonly from: string;
}

const channel = 'acme-challenges';
const ackChannel = 'acme-challenges-ack';
/** Longer than an order may take (10 minutes, acme-manager.ts). */
const entryTtlMs = 15 * 60_000;
/** How long an announcement waits for every instance to confirm before the validation is asked for anyway. */
const confirmTimeoutMs = 10_000;

interface Waiter {
  /** How many instances received the announcement; unknown until PUBLISH answers. */
  need: number;
  got: number;
  done: () => void;
}

/**
 * The ACME challenge answers of a cluster: the CA validates an http-01 or
 * tls-alpn-01 challenge on whichever instance the load balancer picks, so
 * every instance answers the challenges of every instance's orders. Each
 * instance's answers are kept in a Redis hash (field: instance id) and
 * announced on a channel; every instance puts the union of all in force in
 * its data plane and confirms. `publish` (the `ChallengeBoard`'s) resolves
 * once every instance that received the announcement confirmed — so the CA
 * is told to validate only when every instance answers — or after 10 s,
 * logged. After an outage the hash is read again in full.
 */
export class SharedChallenges {
  readonly #entries = new Map<string, Entry>();
  readonly #waiters = new Map<string, Waiter>();
  readonly #hash: string;
  #stop: () => void = () => {};

  constructor(
    private readonly link: RedisLink,
    /** This instance's id in the hash. */
    private readonly instance: string,
    /** Puts a set in force in this instance's data plane. */
    private readonly apply: (set: AcmeChallengeSet) => Promise<unknown>,
    private readonly log: Logger,
  ) {
    this.#hash = link.key('acme', 'challenges');
  }

  /** Subscribes, then reads every instance's answers and puts them in force. */
  async start(): Promise<void> {
    const stops = [
      await this.link.subscribe(channel, (text) => void this.#received(text)),
      await this.link.subscribe(ackChannel, (text) => this.#confirmed(text)),
      this.link.onLink((up) => {
        if (up) void this.resync().catch((err: Error) => this.log.error({ event: 'acme_challenges_sync_failed', error: err.message }, `re-reading the cluster's ACME challenges failed: ${err.message}`));
      }),
    ];
    this.#stop = () => stops.forEach((stop) => stop());
    await this.resync();
  }

  stop(): void {
    this.#stop();
  }

  /** This instance's answers, for every instance: stored, announced, and resolved once confirmed (see the class). Rejects when Redis cannot be reached: the order then fails and is retried. */
  async publish(set: AcmeChallengeSet): Promise<void> {
    const entry: Entry = { set, expiresAt: Date.now() + entryTtlMs };
    this.#entries.set(this.instance, entry);
    if (set.http.length === 0 && set.alpn.length === 0) await this.link.redis.hdel(this.#hash, this.instance);
    else await this.link.redis.hset(this.#hash, this.instance, JSON.stringify(entry));
    const id = randomUUID();
    let done!: () => void;
    const confirmed = new Promise<void>((resolve) => (done = resolve));
    const waiter: Waiter = { need: Infinity, got: 0, done };
    this.#waiters.set(id, waiter);
    let timer: NodeJS.Timeout | undefined;
    try {
      const announcement: Announcement = { id, from: this.instance, ...entry };
      waiter.need = await this.link.publish(channel, JSON.stringify(announcement));
      if (waiter.got >= waiter.need) return;
      const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), confirmTimeoutMs)));
      if ((await Promise.race([confirmed, timeout])) === 'timeout') {
        this.log.warn({ event: 'acme_challenges_unconfirmed', confirmed: waiter.got, instances: waiter.need }, `ACME challenge answers were confirmed by ${waiter.got} of ${waiter.need} instances within ${confirmTimeoutMs / 1000} s; the validation may fail there and is then retried`);
      }
    } finally {
      clearTimeout(timer);
      this.#waiters.delete(id);
    }
  }

  /** Reads every instance's answers from Redis (expired ones dropped) and puts their union in force. */
  async resync(): Promise<void> {
    const stored = await this.link.redis.hgetall(this.#hash);
    this.#entries.clear();
    for (const [instance, text] of Object.entries(stored)) {
      const entry = parse<Entry>(text);
      if (entry && entry.expiresAt > Date.now()) this.#entries.set(instance, entry);
      else await this.link.redis.hdel(this.#hash, instance);
    }
    await this.apply(this.#union());
  }

  async #received(text: string): Promise<void> {
    const a = parse<Announcement>(text);
    if (!a) return;
    this.#entries.set(a.from, { set: a.set, expiresAt: a.expiresAt });
    try {
      await this.apply(this.#union());
      await this.link.publish(ackChannel, JSON.stringify({ id: a.id, by: this.instance }));
    } catch (err) {
      this.log.error({ event: 'acme_challenges_sync_failed', error: (err as Error).message }, `ACME challenge answers of another instance could not be put in force: ${(err as Error).message}`);
    }
  }

  #confirmed(text: string): void {
    const ack = parse<{ id: string }>(text);
    const waiter = ack ? this.#waiters.get(ack.id) : undefined;
    if (!waiter) return;
    waiter.got++;
    if (waiter.got >= waiter.need) waiter.done();
  }

  /** Every live instance's answers together; an instance's own entry included. */
  #union(): AcmeChallengeSet {
    const http = new Map<string, string>();
    const alpn = new Map<string, { certPem: string; keyPem: string }>();
    const now = Date.now();
    for (const { set, expiresAt } of this.#entries.values()) {
      if (expiresAt <= now) continue;
      for (const h of set.http) http.set(h.token, h.keyAuthorization);
      for (const a of set.alpn) alpn.set(a.name, { certPem: a.certPem, keyPem: a.keyPem });
    }
    return { http: [...http].map(([token, keyAuthorization]) => ({ token, keyAuthorization })), alpn: [...alpn].map(([name, c]) => ({ name, ...c })) };
  }
}

function parse<T>(text: string): T | null {
  try {
    const value = JSON.parse(text) as unknown;
    return typeof value === 'object' && value !== null ? (value as T) : null;
  } catch {
    return null;
  }
}
