import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { Metrics, type Logger } from '../../src/observe/index.js';
import { LeasedRateBuckets, leaseSizeOf, RedisLink, type RedisSettings } from '../../src/state/index.js';
import type { Scope } from '../helpers/proxy.js';
import { startRedis } from '../helpers/redis.js';
import { waitFor, whenever } from '../helpers/wait.js';

/*
 * The redis backend's rate buckets against a real redis-server, with three
 * RedisLinks standing for three serving processes. The bound checked is the
 * one docs/cluster.md "Rate limits" states: in a window of w seconds starting
 * from a full fleet bucket, admitted <= burst + rps*w + P*L (P lease holders,
 * L = leaseSizeOf(burst): the debt each may run before its lease comes); in
 * any window, + P*L more for the leases held when it starts.
 */

const settingsFor = (port: number): RedisSettings => ({ display: `redis://127.0.0.1:${port}/0`, host: '127.0.0.1', port, db: 0, username: null, password: null, tls: null, sentinels: [], cluster: 'test' });

/** A logger whose lines the test reads, announced by `lines`'s 'line' event. */
function capturingLogger(): { log: Logger; lines: Record<string, unknown>[]; events: EventEmitter } {
  const lines: Record<string, unknown>[] = [];
  const events = new EventEmitter();
  const log = pino({ level: 'info' }, { write: (line: string) => (lines.push(JSON.parse(line) as Record<string, unknown>), events.emit('line')) });
  return { log, lines, events };
}

interface Holder {
  readonly buckets: LeasedRateBuckets;
  readonly metrics: Metrics;
  readonly link: RedisLink;
}

async function holders(t: Scope, port: number, n: number, log: Logger = pino({ level: 'silent' })): Promise<Holder[]> {
  const all = await Promise.all(
    Array.from({ length: n }, async () => {
      const link = await RedisLink.open(settingsFor(port), log);
      const metrics = new Metrics();
      return { link, metrics, buckets: new LeasedRateBuckets(link, log, metrics) };
    }),
  );
  t.after(async () => {
    for (const h of all) h.buckets.stop();
    await Promise.all(all.map((h) => h.link.close()));
  });
  return all;
}

/** Lease requests a holder made, by result. */
async function leases(h: Holder, result: 'granted' | 'empty' | 'failed'): Promise<number> {
  const metric = await h.metrics.rateLimitLeases.get();
  return metric.values.find((v) => v.labels.result === result)?.value ?? 0;
}
const allLeases = async (h: Holder) => (await leases(h, 'granted')) + (await leases(h, 'empty')) + (await leases(h, 'failed'));
/** A turn of the event loop, as between two requests: a millisecond, for Redis's answers to come in. */
const turn = () => new Promise((resolve) => setTimeout(resolve, 1));

describe('leased rate buckets (state.backend: redis)', () => {
  test('a limit of R taken from three lease holders admits about R, not 3R, within the stated bound, with fewer Redis requests than admitted requests', async (t) => {
    const redis = await startRedis(t);
    const three = await holders(t, redis.port, 3);
    const [rps, burst] = [0.001, 60];
    const size = leaseSizeOf(burst);
    const started = performance.now();
    let admitted = 0;
    let takes = 0;
    // round robin, 2L requests at once per holder (as several arriving in one read), the event loop turning
    // in between: until all three refuse because the fleet is empty
    for (let round = 0; round < 10 * burst; round++) {
      const refusals = three.map((h) => {
        let d = h.buckets.take('site|/|a:192.0.2.1', rps, burst);
        for (let i = 0; i < 2 * size; i++, d = h.buckets.take('site|/|a:192.0.2.1', rps, burst)) {
          takes++;
          if (d.allowed) admitted++;
        }
        return !d.allowed && d.retryAfter > 1;
      });
      if (refusals.every(Boolean)) break;
      await turn();
    }
    const elapsedS = (performance.now() - started) / 1000;
    const bound = burst + Math.ceil(rps * elapsedS) + three.length * size;
    assert.ok(admitted <= bound, `admitted ${admitted} of ${takes}: at most burst + rps*w + P*L = ${bound}`);
    assert.ok(admitted >= burst - three.length * size, `admitted ${admitted}: the fleet's burst is spent, less at most the leases that expired unspent`);
    const redisCalls = (await Promise.all(three.map(allLeases))).reduce((a, b) => a + b, 0);
    t.diagnostic(`admitted ${admitted} of ${takes} takes (limit ${burst}, bound ${bound}), ${redisCalls} lease requests`);
    assert.ok(redisCalls < admitted, `${redisCalls} lease requests for ${admitted} admitted requests`);
    for (const h of three) assert.equal(await leases(h, 'failed'), 0);
  });

  test('before its first lease comes, a process admits one lease worth of requests at once, synchronously, and the lease pays that debt', async (t) => {
    const redis = await startRedis(t);
    const [h] = (await holders(t, redis.port, 1)) as [Holder];
    const burst = 40;
    const size = leaseSizeOf(burst);
    // a synchronous burst: no answer from Redis can come in between
    const burstAnswers = Array.from({ length: 20 }, () => h.buckets.take('k', 0.001, burst).allowed);
    assert.deepEqual(burstAnswers, [...Array<boolean>(size).fill(true), ...Array<boolean>(20 - size).fill(false)]);
    // the one lease request, sent at the end of the turn, asked for the debt run up meanwhile plus a lease: the fleet holds burst - 2L
    const fleet = await waitFor(
      async () => {
        const t = (await redis.cli('HGET', 'pcl:test:rl:k', 't')).stdout.trim();
        return t === '' ? undefined : Number(t);
      },
      { what: 'the fleet bucket in Redis' },
    );
    assert.ok(Math.abs(fleet - (burst - 2 * size)) < 0.1, `fleet tokens ${fleet}, expected ${burst - 2 * size}`);
    await waitFor(async () => ((await leases(h, 'granted')) === 1 ? true : undefined), { what: 'the lease answered' });
    assert.equal(await allLeases(h), 1, 'one request in flight per key: the refused takes asked for nothing');
    // the 2L granted paid the L admitted on debt and left a lease of L: L from it, then L on debt again while the next is on its way
    const next = Array.from({ length: 4 * size }, () => h.buckets.take('k', 0.001, burst).allowed);
    assert.equal(next.filter(Boolean).length, 2 * size);
  });

  test('an empty fleet bucket is refused locally until its next token, with no Redis request per refused take', async (t) => {
    const redis = await startRedis(t);
    const [h] = (await holders(t, redis.port, 1)) as [Holder];
    const [rps, burst] = [0.01, 3];
    let last = h.buckets.take('empty', rps, burst);
    for (let i = 0; i < 2000 && (last.allowed || last.retryAfter === 0); i++) {
      await turn();
      last = h.buckets.take('empty', rps, burst);
    }
    assert.equal(last.allowed, false);
    assert.ok(last.retryAfter > 1 && last.retryAfter <= 1 / rps, `Retry-After ${last.retryAfter} s: when Redis said the next token comes, at most 1/rps`);
    const before = await allLeases(h);
    for (let i = 0; i < 1000; i++) assert.equal(h.buckets.take('empty', rps, burst).allowed, false);
    await turn();
    assert.equal(await allLeases(h), before, 'a refused client costs Redis nothing until its next token');
  });

  test('unspent tokens of a lease are not spent after the lease expired', async (t) => {
    const redis = await startRedis(t);
    const [h] = (await holders(t, redis.port, 1)) as [Holder];
    const burst = 50;
    const size = leaseSizeOf(burst);
    assert.equal(h.buckets.take('x', 0.001, burst).allowed, true);
    await waitFor(async () => ((await leases(h, 'granted')) === 1 ? true : undefined), { what: 'the first lease' });
    // two seconds later by the clock `take` is given: the lease (L tokens) is gone, only the debt allowance is left
    const later = performance.now() + 2_000;
    const answers = Array.from({ length: 3 * size }, () => h.buckets.take('x', 0.001, burst, later).allowed);
    assert.equal(answers.filter(Boolean).length, size, 'L on debt, none from the expired lease');
  });

  test('Redis lost: the process falls back to its own buckets with the full limit, logs and counts it, and shares again once Redis is back', async (t) => {
    const redis = await startRedis(t);
    const { log, lines, events } = capturingLogger();
    const [h] = (await holders(t, redis.port, 1, log)) as [Holder];
    assert.equal(h.buckets.shared, true);
    await redis.kill();
    const lost = await whenever(events, 'line', () => lines.find((l) => l.event === 'rate_limit_local'), { what: 'the rate_limit_local log line' });
    assert.equal(lost.level, 40, 'a warning');
    assert.equal(h.buckets.shared, false);
    assert.equal((await h.metrics.rateLimitFallbacks.get()).values[0]?.value, 1);
    // memory mode's behaviour: this process's own bucket, burst at once, then refused
    assert.deepEqual([1, 2, 3].map(() => h.buckets.take('down', 0.001, 2).allowed), [true, true, false]);

    await startRedis(t, { port: redis.port });
    await whenever(events, 'line', () => lines.find((l) => l.event === 'rate_limit_shared'), { what: 'the rate_limit_shared log line', timeoutMs: 15_000 });
    assert.equal(h.buckets.shared, true);
    assert.equal(h.buckets.take('up', 0.001, 2).allowed, true);
    await waitFor(async () => ((await leases(h, 'granted')) >= 1 ? true : undefined), { what: 'a lease from the restarted Redis' });
  });
  test('a hung Redis (stopped, the link still up) counts as lost once a lease request waits over 2 s: the process serves on its own buckets', async (t) => {
    const redis = await startRedis(t);
    const { log, lines } = capturingLogger();
    const [h] = (await holders(t, redis.port, 1, log)) as [Holder];
    process.kill(redis.pid, 'SIGSTOP');
    const burst = 10;
    assert.equal(h.buckets.take('hung', 0.001, burst).allowed, true, 'on debt; the lease request goes out and hangs');
    await turn();
    assert.equal(h.buckets.take('hung', 0.001, burst).allowed, false, 'L = 1: the debt is run, no answer yet');
    // three seconds later by the clock `take` is given
    const later = performance.now() + 3_000;
    const answers = Array.from({ length: burst + 1 }, () => h.buckets.take('hung', 0.001, burst, later).allowed);
    assert.equal(h.buckets.shared, false);
    assert.deepEqual(answers, [...Array<boolean>(burst).fill(true), false], "this process's own bucket: the full burst, then refused");
    assert.match(String(lines.find((l) => l.event === 'rate_limit_local')?.error), /no answer within 2 s/);
    process.kill(redis.pid, 'SIGCONT'); // (killed after the test either way)
  });
});
