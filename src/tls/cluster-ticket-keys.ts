import { createHash, randomBytes } from 'node:crypto';
import { Counter, Gauge, Registry } from 'prom-client';
import type { Config } from '../config/index.js';
import { PortcullisError } from '../errors.js';
import type { Logger } from '../observe/index.js';
import { redisState, type LockLease, type RedisLink, type StateBackend } from '../state/index.js';
import { TicketKeyRing } from './ticket-keys.js';

/** The cluster's keys: the value `pcl:<cluster>:v:tls/ticket-keys`, written only under the lock below, fenced. */
const valueKey = 'tls/ticket-keys';
/** `pcl:<cluster>:lock:tls-ticket-keys` and its fence `pcl:<cluster>:fence:tls-ticket-keys`. */
const lockName = 'tls-ticket-keys';
/** `pcl:<cluster>:ch:tls-ticket-keys`: "the keys changed, read them" (the message is the new key's id, never a key). */
const channel = 'tls-ticket-keys';
/** The re-read behind pub/sub (a message sent while a subscriber reconnected is lost). */
const defaultResyncMs = 30_000;
const maxTimerMs = 2 ** 31 - 1;

/** The keys in force in the cluster: current and previous (TicketKeyRing's export), and when the current one was made. */
interface KeyRecord {
  readonly keys: Buffer;
  readonly created: number;
}

/** How this instance came to hold a record: for the log and the metric. */
type How = 'created' | 'rotated' | 'received' | 'reseeded';

function encode(record: KeyRecord): string {
  return JSON.stringify({ v: 1, keys: record.keys.toString('base64'), created: record.created });
}

/** The stored record; null when there is none, 'invalid' when what is stored is not one (never thrown: it is replaced). */
function decode(value: Buffer | null): KeyRecord | null | 'invalid' {
  if (value === null) return null;
  try {
    const raw = JSON.parse(value.toString('utf8')) as { v?: unknown; keys?: unknown; created?: unknown };
    const keys = typeof raw.keys === 'string' ? Buffer.from(raw.keys, 'base64') : null;
    if (raw.v !== 1 || keys?.length !== 96 || typeof raw.created !== 'number' || !Number.isFinite(raw.created)) return 'invalid';
    return { keys, created: raw.created };
  } catch {
    return 'invalid';
  }
}

/**
 * A key's public id for logs: a hash of its name, which every ticket carries
 * in clear (RFC 5077 §4), so it tells nothing about the key itself and lets an
 * operator see that every instance serves with the same one.
 */
function keyIdOf(keys: Buffer): string {
  return createHash('sha256').update(keys.subarray(0, 16)).digest('hex').slice(0, 12);
}

export interface ClusterTicketKeysOptions {
  /** Where the record and its lock live: `redisState(link)` unless given (a test slows it down to stall a leader). */
  readonly state?: StateBackend;
  /** The periodic re-read behind pub/sub; 30 s. */
  readonly resyncMs?: number;
}

/**
 * The session-ticket keys of a cluster (`state.backend: redis`): one set for
 * every instance, so a session made on one resumes on any other.
 *
 * The keys live in Redis only (never on disk here, never in a log or a
 * pub/sub message). Every rotation, and the first creation, is made by
 * whichever instance holds the lock `tls-ticket-keys` (the rotation leader of
 * that moment), which re-reads the record under the lock and writes the next
 * one through the lock's fence: a holder that stalled past its lock's expiry
 * cannot overwrite what its successor wrote. A rotation is due once the
 * current key is `tls.ticketKeyRotation` old, by the time stored with it, so
 * the schedule survives restarts of any instance. Every instance applies new
 * keys when told by pub/sub, after a reconnect, and every 30 s regardless.
 * The previous key keeps decrypting tickets until the next rotation.
 *
 * On failure: Redis unreachable → the keys in force stay (sessions keep
 * resuming everywhere), a due rotation waits, logged as
 * `ticket_key_rotation_paused` with the gauge `portcullis_ticket_key_rotation_paused`,
 * and is made once Redis is back. Redis back without the keys (restarted
 * empty) → the first instance to take the lock writes the keys it holds back.
 * Not safe to use after `stop`; its methods may be called at any time before.
 */
export class ClusterTicketKeys {
  /** What the data plane serves with (handed to workers by the fleet). */
  readonly ring = new TicketKeyRing();
  /** This component's metrics, added to the instance's scrape. */
  readonly registry = new Registry();
  readonly #rotations = new Counter<'result'>({
    name: 'portcullis_ticket_key_rotations_total',
    help: 'Session-ticket key changes made by this instance under the cluster lock (created, rotated, reseeded) or refused (fenced: a later lock holder existed; failed: the state backend did not answer)',
    labelNames: ['result'],
    registers: [this.registry],
  });
  readonly #created = new Gauge({
    name: 'portcullis_ticket_key_created_timestamp_seconds',
    help: "When the session-ticket key in force was made (unix time): the same on every instance of a cluster; older than tls.ticketKeyRotation means rotation is paused",
    registers: [this.registry],
  });
  readonly #paused = new Gauge({
    name: 'portcullis_ticket_key_rotation_paused',
    help: '1 while a due session-ticket key rotation cannot be made because the state backend does not answer (the current keys stay in force)',
    registers: [this.registry],
  });
  readonly #link: RedisLink;
  readonly #state: StateBackend;
  readonly #log: Logger;
  readonly #resyncMs: number;
  #rotationMs: number;
  #known: KeyRecord | null = null;
  #queue: Promise<void> = Promise.resolve();
  #resyncQueued = false;
  #dueTimer: NodeJS.Timeout | null = null;
  #resyncTimer: NodeJS.Timeout | null = null;
  #stops: (() => void)[] = [];
  #stopped = false;
  #pausedSince: number | null = null;
  #syncFailing = false;

  private constructor(link: RedisLink, rotationMs: number, log: Logger, options: ClusterTicketKeysOptions) {
    this.#link = link;
    this.#state = options.state ?? redisState(link);
    this.#log = log;
    this.#rotationMs = rotationMs;
    this.#resyncMs = options.resyncMs ?? defaultResyncMs;
  }

  /**
   * Takes the cluster's keys, creating them (under the lock) when there are
   * none; rejects with PCL_STATE_UNREACHABLE when Redis does not let it: an
   * instance with keys of its own would refuse every other instance's sessions.
   */
  static async open(link: RedisLink, rotationMs: number, log: Logger, options: ClusterTicketKeysOptions = {}): Promise<ClusterTicketKeys> {
    const keys = new ClusterTicketKeys(link, rotationMs, log, options);
    try {
      await keys.#open();
    } catch (err) {
      keys.stop();
      const { display, cluster } = link.settings;
      throw new PortcullisError(
        'PCL_STATE_UNREACHABLE',
        `could not read or create the cluster's session-ticket keys in the redis state backend at ${display}: ${(err as Error).message}; the Redis user needs GET, SET, INCR, EVAL, PUBLISH and SUBSCRIBE on pcl:${cluster}:*`,
        { cause: err },
      );
    }
    return keys;
  }

  /** Follows a reloaded `tls.ticketKeyRotation`. */
  apply(config: Config): void {
    if (config.tls.ticketKeyRotationMs === this.#rotationMs) return;
    this.#rotationMs = config.tls.ticketKeyRotationMs;
    this.#schedule();
  }

  /** Reads the cluster's keys now and applies them (a rotation follows when they are due). Never rejects; runs one at a time. */
  resync(): Promise<void> {
    if (this.#resyncQueued) return this.#queue;
    this.#resyncQueued = true;
    return this.#enqueue(async () => {
      this.#resyncQueued = false;
      try {
        await this.#sync();
        this.#syncFailing = false;
      } catch (err) {
        this.#syncFailed(err as Error);
      }
    });
  }

  stop(): void {
    this.#stopped = true;
    if (this.#dueTimer) clearTimeout(this.#dueTimer);
    if (this.#resyncTimer) clearInterval(this.#resyncTimer);
    for (const stop of this.#stops) stop();
    this.#stops = [];
  }

  async #open(): Promise<void> {
    // subscribed first: a rotation made while this one reads is heard
    this.#stops.push(await this.#link.subscribe(channel, () => void this.resync()));
    this.#stops.push(this.#link.onLink((up) => up && void this.resync()));
    await this.#enqueue(() => this.#sync());
    this.#resyncTimer = setInterval(() => void this.resync(), this.#resyncMs).unref();
  }

  /** Applies the stored keys; without any (or unreadable ones), writes some under the lock. Throws when Redis fails. */
  async #sync(): Promise<void> {
    if (this.#stopped) return;
    const stored = decode(await this.#state.read(valueKey));
    if (stored === null || stored === 'invalid') await this.#state.withLock(lockName, (lease) => this.#lead(lease));
    else this.#adopt(stored, 'received');
    this.#schedule();
  }

  /** Under the lock: whatever is due — the first keys, keys written back, a rotation — or nothing when another holder did it. */
  async #lead(lease: LockLease): Promise<void> {
    const stored = decode(await this.#state.read(valueKey));
    const now = Date.now();
    if (stored !== null && stored !== 'invalid' && stored.created + this.#rotationMs > now) {
      this.#adopt(stored, 'received');
      return;
    }
    let next: KeyRecord;
    let how: How;
    if (stored !== null && stored !== 'invalid') {
      // the old current key becomes the previous one: its tickets still resume until the next rotation
      next = { keys: Buffer.concat([randomBytes(48), stored.keys.subarray(0, 48)]), created: now };
      how = 'rotated';
    } else {
      if (stored === 'invalid') this.#log.error({ event: 'ticket_keys_invalid', key: this.#link.key('v', valueKey) }, 'the session-ticket keys stored in Redis are unreadable; replacing them (sessions made before need a full handshake)');
      else if (this.#known) this.#log.warn({ event: 'ticket_keys_reseeded', keyId: keyIdOf(this.#known.keys) }, 'Redis has no session-ticket keys (restarted without persistence, or flushed): writing back the keys this instance serves with');
      next = this.#known ?? { keys: this.ring.export(), created: now };
      how = this.#known ? 'reseeded' : 'created';
    }
    if (!(await lease.write(valueKey, encode(next)))) {
      this.#rotations.inc({ result: 'fenced' });
      this.#log.warn({ event: 'ticket_key_rotation_fenced', fence: lease.fence }, 'lost the session-ticket key lock to another instance before writing: its keys stand, this instance takes them');
      void this.resync();
      return;
    }
    this.#rotations.inc({ result: how });
    this.#adopt(next, how);
    // the others read the keys when told; those who miss it read them within the re-read period
    await this.#link.publish(channel, keyIdOf(next.keys)).catch(() => {});
  }

  #adopt(record: KeyRecord, how: How): void {
    const same = this.#known?.keys.equals(record.keys) === true;
    this.#known = record;
    this.#created.set(Math.floor(record.created / 1000));
    if (same) return;
    this.ring.import(record.keys);
    const keyId = keyIdOf(record.keys);
    this.#log.info({ event: 'ticket_keys_applied', how, keyId, created: new Date(record.created).toISOString() }, `session-ticket keys ${how === 'received' ? 'of the cluster' : how} in force (key ${keyId}); the previous key still decrypts`);
  }

  /** The next rotation, when the current key is tls.ticketKeyRotation old. */
  #schedule(): void {
    if (this.#dueTimer) clearTimeout(this.#dueTimer);
    this.#dueTimer = null;
    if (this.#stopped || !this.#known) return;
    const wait = this.#known.created + this.#rotationMs - Date.now();
    if (wait > 0) this.#resumed();
    this.#dueTimer = setTimeout(() => void this.#rotate(), Math.min(Math.max(wait, 0), maxTimerMs)).unref();
  }

  #rotate(): Promise<void> {
    return this.#enqueue(async () => {
      if (this.#stopped) return;
      try {
        await this.#state.withLock(lockName, (lease) => this.#lead(lease));
        this.#schedule();
      } catch (err) {
        // not rescheduled: the reconnect, or the periodic re-read once Redis answers, tries again
        this.#rotations.inc({ result: 'failed' });
        this.#pause(err as Error);
      }
    });
  }

  #pause(err: Error): void {
    if (this.#pausedSince !== null || this.#stopped) return;
    this.#pausedSince = Date.now();
    this.#paused.set(1);
    const keyId = this.#known ? keyIdOf(this.#known.keys) : null;
    this.#log.warn(
      { event: 'ticket_key_rotation_paused', keyId, error: err.message },
      'session-ticket key rotation is due but the state backend does not answer: keeping the current keys (sessions keep resuming on every instance that has them); rotating once it is back',
    );
  }

  #resumed(): void {
    if (this.#pausedSince === null) return;
    this.#log.info({ event: 'ticket_key_rotation_resumed', pausedMs: Date.now() - this.#pausedSince }, 'session-ticket key rotation resumed');
    this.#pausedSince = null;
    this.#paused.set(0);
  }

  #syncFailed(err: Error): void {
    // during an outage the link has said so (state_backend_lost); otherwise say it once per streak
    if (this.#syncFailing || this.#stopped || !this.#link.up) return;
    this.#syncFailing = true;
    this.#log.warn({ event: 'ticket_keys_sync_failed', error: err.message }, 'could not read the cluster session-ticket keys; serving with the current ones and reading again within 30 s');
  }

  #enqueue(task: () => Promise<void>): Promise<void> {
    const run = this.#queue.then(task);
    this.#queue = run.catch(() => {});
    return run;
  }
}
