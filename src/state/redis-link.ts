import { isIP } from 'node:net';
import { Redis, type RedisOptions } from 'ioredis';
import { PortcullisError } from '../errors.js';
import type { Logger } from '../observe/index.js';

/** Where the `redis` backend keeps the cluster's state: what `state:` provisions into. */
export interface RedisSettings {
  /** "redis://user@host:6379/0" with the password left out: for logs and errors. */
  readonly display: string;
  /** The server, or with `sentinels` the master's name as Sentinel knows it. */
  readonly host: string;
  readonly port: number;
  readonly db: number;
  readonly username: string | null;
  readonly password: string | null;
  /** rediss://: verified against `ca` (the system roots when null), with a client certificate when set. */
  readonly tls: { readonly ca: string | null; readonly cert: string | null; readonly key: string | null } | null;
  /** Redis Sentinel: the master `host` is followed through these (host, port), failovers included. Empty: `host:port` is the server. */
  readonly sentinels: readonly { readonly host: string; readonly port: number }[];
  /** The cluster's name: every key and channel of this cluster starts with `pcl:<cluster>:`. */
  readonly cluster: string;
}

/** How long a start waits for Redis before refusing to start. */
const startTimeoutMs = 5_000;

/** Called when the connection to Redis is lost (`false`) or back and ready (`true`). */
export type LinkListener = (up: boolean) => void;

/**
 * One instance's connection to the cluster's Redis: a command connection and,
 * once something subscribes, a subscriber connection. The link is up while
 * both are (a recovery is announced once both are ready). Both reconnect by
 * themselves (following a Sentinel failover); whoever keeps state from Redis
 * listens to `onLink` to re-read it in full after an outage, and keeps
 * serving on its local copy during one.
 */
export class RedisLink {
  readonly settings: RedisSettings;
  readonly #commands: Redis;
  #subscriber: Redis | null = null;
  readonly #handlers = new Map<string, Set<(message: string) => void>>();
  readonly #listeners = new Set<LinkListener>();
  readonly #log: Logger;
  #up = true;
  /** The connections ("commands", "subscriber") lost and not ready again. */
  readonly #down = new Set<string>();
  #closed = false;

  private constructor(settings: RedisSettings, commands: Redis, log: Logger) {
    this.settings = settings;
    this.#commands = commands;
    this.#log = log;
    this.#watch(commands, 'commands');
  }

  /**
   * Connects, or refuses to start (PCL_STATE_UNREACHABLE) when Redis does not
   * answer a PING within 5 s: an instance that started without the cluster's
   * state would serve without its deny list and blocks.
   */
  static async open(settings: RedisSettings, log: Logger): Promise<RedisLink> {
    const client = new Redis({ ...optionsOf(settings), lazyConnect: true });
    // the first error says why (refused, TLS verification, AUTH); "Connection is closed" follows it
    let cause: Error | null = null;
    client.on('error', (err: Error) => {
      cause ??= err;
    });
    try {
      await withTimeout(client.connect().then(() => client.ping()), startTimeoutMs);
    } catch (err) {
      client.disconnect();
      const why = (cause ?? (err as Error)).message.replace(/\.$/, '');
      throw new PortcullisError('PCL_STATE_UNREACHABLE', `the redis state backend at ${settings.display} did not answer: ${why}; check state.redis${settings.sentinels.length > 0 ? ' and state.sentinels' : ''}, that the server runs and that the credentials and TLS settings match`, { cause: err });
    }
    return new RedisLink(settings, client, log);
  }

  /** The key or channel `parts` names in this cluster: `pcl:<cluster>:<parts joined by ":">`. */
  key(...parts: string[]): string {
    return `pcl:${this.settings.cluster}:${parts.join(':')}`;
  }

  /** The command connection (ioredis): commands wait while it reconnects, and fail once it gave up on them. */
  get redis(): Redis {
    return this.#commands;
  }

  /** Whether the command connection is up now. */
  get up(): boolean {
    return this.#up;
  }

  /** Tells `listener` of every loss and recovery; returns the function that stops it. */
  onLink(listener: LinkListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Sends `message` to every instance subscribed to `channel` (a name inside this cluster), this one included; resolves with the number of subscribers that received it. */
  publish(channel: string, message: string): Promise<number> {
    return this.#commands.publish(this.key('ch', channel), message);
  }

  /**
   * Calls `handler` with every message published on `channel` from now on.
   * A message sent while the subscriber was disconnected is lost: pair a
   * subscription with a full re-read on `onLink(true)`.
   */
  async subscribe(channel: string, handler: (message: string) => void): Promise<() => void> {
    const name = this.key('ch', channel);
    let handlers = this.#handlers.get(name);
    if (!handlers) {
      handlers = new Set();
      this.#handlers.set(name, handlers);
      try {
        await this.#subscriberConnection().subscribe(name);
      } catch (err) {
        // not subscribed: the next call must ask again rather than find the channel taken
        this.#handlers.delete(name);
        throw err;
      }
    }
    handlers.add(handler);
    return () => handlers.delete(handler);
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([this.#commands, this.#subscriber].map((c) => c?.quit().catch(() => c.disconnect())));
  }

  #subscriberConnection(): Redis {
    if (this.#subscriber) return this.#subscriber;
    const subscriber = this.#commands.duplicate();
    subscriber.on('error', () => {});
    subscriber.on('message', (channel: string, message: string) => {
      for (const handler of this.#handlers.get(channel) ?? []) handler(message);
    });
    this.#subscriber = subscriber;
    // the link is up only while both connections are: a recovery is announced once messages arrive again too
    this.#watch(subscriber, 'subscriber');
    return subscriber;
  }

  #watch(client: Redis, role: string): void {
    let lastError = '';
    client.on('error', (err: Error) => {
      lastError = err.message;
    });
    client.on('close', () => {
      this.#down.add(role);
      if (this.#closed || !this.#up) return;
      this.#up = false;
      this.#log.error({ event: 'state_backend_lost', backend: this.settings.display, connection: role, error: lastError || undefined }, `lost the redis state backend at ${this.settings.display}: serving on the last known state, changes are queued until it is back`);
      for (const listener of this.#listeners) listener(false);
    });
    client.on('ready', () => {
      this.#down.delete(role);
      if (this.#up || this.#down.size > 0) return;
      this.#up = true;
      this.#log.info({ event: 'state_backend_recovered', backend: this.settings.display }, `the redis state backend at ${this.settings.display} is back: re-reading the cluster's state`);
      for (const listener of this.#listeners) listener(true);
    });
  }
}

function optionsOf(s: RedisSettings): RedisOptions {
  const tls = s.tls ? { ...(s.tls.ca ? { ca: s.tls.ca } : {}), ...(s.tls.cert ? { cert: s.tls.cert, key: s.tls.key ?? undefined } : {}) } : undefined;
  const common: RedisOptions = {
    db: s.db,
    ...(s.username ? { username: s.username } : {}),
    ...(s.password ? { password: s.password } : {}),
    // commands during an outage fail fast, so callers fall back to their local copy and queue
    maxRetriesPerRequest: 1,
    enableOfflineQueue: true,
    retryStrategy: (attempt) => Math.min(50 * attempt, 1_000),
    connectionName: `portcullis:${s.cluster}`,
  };
  // an IP address is checked against the certificate's IP SANs; SNI carries names only (RFC 6066)
  if (s.sentinels.length === 0) return { ...common, host: s.host, port: s.port, ...(tls ? { tls: { ...tls, ...(isIP(s.host) ? {} : { servername: s.host }) } } : {}) };
  return {
    ...common,
    name: s.host,
    sentinels: s.sentinels.map((x) => ({ host: x.host, port: x.port })),
    ...(tls ? { tls, sentinelTLS: tls, enableTLSForSentinelMode: true } : {}),
    sentinelRetryStrategy: (attempt) => Math.min(100 * attempt, 1_000),
  };
}

function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
