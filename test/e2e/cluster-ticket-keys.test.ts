import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { RedisLink, redisState, type RedisSettings, type StateBackend } from '../../src/state/index.js';
import { ClusterTicketKeys } from '../../src/tls/index.js';
import type { Scope } from '../helpers/proxy.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { whenever, within } from '../helpers/wait.js';

/*
 * The ticket-key component itself, in this process, over real Redis
 * connections: what the instances cannot show without waiting for hours — a
 * leader that stalls past its lock, a rotation that falls due during an
 * outage (the rotation period here is the component's own argument, not the
 * config's, whose minimum is a minute).
 */

const hour = 3_600_000;
const recordKey = 'tls/ticket-keys';

const settingsFor = (port: number): RedisSettings => ({ display: `redis://127.0.0.1:${port}/0`, host: '127.0.0.1', port, db: 0, username: null, password: null, tls: null, sentinels: [], cluster: 'test' });

/** A logger whose lines are kept, parsed, with an event at each. */
function capturedLog() {
  const lines: Record<string, unknown>[] = [];
  const written = new EventEmitter();
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      written.emit('line');
      done();
    },
  });
  const next = (match: (l: Record<string, unknown>) => boolean, from = 0, timeoutMs = 10_000) =>
    whenever(written, 'line', () => lines.slice(from).find(match), { what: 'a matching log line', timeoutMs });
  return { log: pino({ level: 'debug' }, sink), lines, next };
}

async function linkTo(t: Scope, redis: RedisServer, log = pino({ level: 'silent' })): Promise<RedisLink> {
  const link = await RedisLink.open(settingsFor(redis.port), log);
  t.after(() => link.close());
  return link;
}

/** Marks the stored keys `age` old, as the clock would. */
async function age(state: StateBackend, ageMs: number): Promise<void> {
  const stored = JSON.parse(((await state.read(recordKey)) as Buffer).toString()) as { created: number };
  await state.write(recordKey, JSON.stringify({ ...stored, created: Date.now() - ageMs }));
}

describe('the cluster ticket-key component', () => {
  test("a stale leader's fenced write is refused: it takes its successor's keys instead of overwriting them", async (t) => {
    const redis = await startRedis(t);
    const [linkA, linkB] = [await linkTo(t, redis), await linkTo(t, redis)];
    const a = capturedLog();
    const b = capturedLog();
    // A's writes under the lock wait for this gate while it is closed: a leader that stalled (a GC pause, a frozen VM)
    let gate: Promise<void> | null = null;
    let open!: () => void;
    let stalled!: () => void;
    const aStalls = new Promise<void>((resolve) => (stalled = resolve));
    const real = redisState(linkA);
    const slowed: StateBackend = {
      read: (key) => real.read(key),
      write: (key, value, opts) => real.write(key, value, opts),
      withLock: (name, fn) =>
        real.withLock(name, (lease) =>
          fn({
            fence: lease.fence,
            signal: lease.signal,
            write: async (key, value, opts) => {
              if (gate) {
                stalled();
                await gate;
              }
              return lease.write(key, value, opts);
            },
          }),
        ),
    };
    const keysA = await ClusterTicketKeys.open(linkA, hour, a.log, { state: slowed });
    t.after(() => keysA.stop());
    const keysB = await ClusterTicketKeys.open(linkB, hour, b.log);
    t.after(() => keysB.stop());
    assert.deepEqual(keysB.ring.export(), keysA.ring.export(), 'B took the keys A created');

    gate = new Promise<void>((resolve) => (open = resolve));
    await age(redisState(linkB), 2 * hour);
    void keysA.resync();
    await within(aStalls, 10_000, 'A stalling in its fenced write');
    // A's lock expires while it stalls (deleted here rather than waited for): B becomes the leader
    await redis.cli('DEL', 'pcl:test:lock:tls-ticket-keys');
    const fromB = b.lines.length;
    void keysB.resync();
    const rotated = await b.next((l) => l.event === 'ticket_keys_applied' && l.how === 'rotated', fromB);
    const successor = keysB.ring.export();

    open();
    const fenced = await a.next((l) => l.event === 'ticket_key_rotation_fenced');
    assert.ok(Number(fenced.fence) < Number(await redis.cli('GET', 'pcl:test:fence:tls-ticket-keys').then((r) => r.stdout.trim())), "A's fence is older than B's");
    await a.next((l) => l.event === 'ticket_keys_applied' && l.keyId === rotated.keyId);
    assert.deepEqual(keysA.ring.export(), successor, 'A serves with the keys B wrote');
    const stored = JSON.parse(((await redisState(linkB).read(recordKey)) as Buffer).toString()) as { keys: string };
    assert.deepEqual(Buffer.from(stored.keys, 'base64'), successor, "Redis still holds B's keys");
    assert.equal(a.lines.filter((l) => l.event === 'ticket_keys_applied' && l.how === 'rotated').length, 0, 'A rotated nothing');
  });

  test('a rotation due while Redis is lost waits, with the current keys kept, and is made once Redis is back', async (t) => {
    let redis = await startRedis(t);
    const link = await linkTo(t, redis);
    const { log, lines, next } = capturedLog();
    const keys = await ClusterTicketKeys.open(link, 1_000, log);
    t.after(() => keys.stop());
    const applied: Buffer[] = [];
    keys.ring.onRotate = () => applied.push(keys.ring.export());
    // in step with Redis: rotations happen
    await next((l) => l.event === 'ticket_keys_applied' && l.how === 'rotated');

    const from = lines.length;
    await redis.kill();
    const paused = await next((l) => l.event === 'ticket_key_rotation_paused', from);
    const held = keys.ring.export();
    assert.equal(paused.keyId, createHash('sha256').update(held.subarray(0, 16)).digest('hex').slice(0, 12), 'the log names the key kept, by its public id');
    assert.match(await keys.registry.metrics(), /portcullis_ticket_key_rotation_paused 1/);
    const appliedBefore = applied.length;

    // Redis restarted without persistence: the keys kept through the outage are written back, then rotated
    redis = await startRedis(t, { port: redis.port });
    const reseeded = await next((l) => l.event === 'ticket_keys_reseeded', from, 20_000);
    assert.equal(reseeded.keyId, paused.keyId, 'no key of its own was made during the outage');
    await next((l) => l.event === 'ticket_key_rotation_resumed', from);
    const rotation = applied[appliedBefore] as Buffer;
    assert.ok(rotation, 'a rotation after the recovery');
    assert.deepEqual(rotation.subarray(48), held.subarray(0, 48), 'the key of the outage is the previous key after the rotation');
    assert.match(await keys.registry.metrics(), /portcullis_ticket_key_rotation_paused 0/);
  });
});
