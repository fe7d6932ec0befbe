// Cost of the rate-limit phase's `take` on the request path: the memory
// buckets against the redis backend's leased buckets (src/state/leased-rate-buckets.ts),
// which answer from a local lease and ask Redis for the next one in the background.
// Starts its own redis-server (Debian's) on a free loopback port.
// Run: node --import tsx bench/rate-buckets.ts   (medians of 5 rounds)
// "request path" times only the synchronous takes; "process CPU" is the
// process's whole CPU time over the run per take, the background lease
// traffic (pipelines sent, answers parsed) included.
import { pino } from 'pino';
import { Metrics } from '../src/observe/index.js';
import { LeasedRateBuckets, memoryRateBuckets, RedisLink, type RateBuckets } from '../src/state/index.js';
import { startRedis } from '../test/helpers/redis.js';

const cleanups: (() => unknown)[] = [];
const redis = await startRedis({ after: (fn) => cleanups.push(fn) });
const log = pino({ level: 'silent' });
const link = await RedisLink.open({ display: redis.url, host: '127.0.0.1', port: redis.port, db: 0, username: null, password: null, tls: null, sentinels: [], cluster: 'bench' }, log);
const metrics = new Metrics();
const leased = new LeasedRateBuckets(link, log, metrics);
const turn = () => new Promise((resolve) => setImmediate(resolve));
const ms20 = () => new Promise((resolve) => setTimeout(resolve, 20));

async function leaseRequests(): Promise<number> {
  return (await metrics.rateLimitLeases.get()).values.reduce((sum, v) => sum + v.value, 0);
}

interface Scenario {
  readonly label: string;
  readonly keys: readonly string[];
  readonly rps: number;
  readonly burst: number;
  /** Between batches of 1000: a turn of the event loop, or a timer (requests arriving at a pace Redis keeps up with on a busy 2-core machine). */
  readonly pause: () => Promise<unknown>;
  readonly takes: number;
}

/**
 * `takes` calls in batches of 1000 over the scenario's keys, the event loop
 * turning between batches (so Redis's answers come in, as between requests);
 * only the synchronous batches are timed.
 */
async function measure(buckets: RateBuckets, s: Scenario, takes: number): Promise<{ ns: number; cpuNs: number; admitted: number; leases: number }> {
  const batch = 1_000;
  const leasesBefore = await leaseRequests();
  const cpuBefore = process.cpuUsage();
  let ns = 0n;
  let admitted = 0;
  for (let i = 0; i < takes; i += batch) {
    const start = process.hrtime.bigint();
    for (let j = 0; j < batch; j++) if (buckets.take(s.keys[(i + j) % s.keys.length] as string, s.rps, s.burst).allowed) admitted++;
    ns += process.hrtime.bigint() - start;
    await s.pause();
  }
  const cpu = process.cpuUsage(cpuBefore);
  return { ns: Number(ns) / takes, cpuNs: ((cpu.user + cpu.system) * 1000) / takes, admitted: admitted / takes, leases: ((await leaseRequests()) - leasesBefore) / takes };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] as number;
const one = ['site|/v1/|a:192.0.2.1'];
const many = Array.from({ length: 10_000 }, (_, i) => `site|/v1/|a:10.0.${i >> 8}.${i & 255}`);
const scenarios: Scenario[] = [
  // the ordinary admitted request: spent from the held lease, no Redis request
  { label: 'one key, burst 1e6 (L 100000)', keys: one, rps: 1e6, burst: 1e6, pause: turn, takes: 200_000 },
  // many clients, a lease request now and then
  { label: '10 000 keys, burst 1000 (L 100)', keys: many, rps: 1e6, burst: 1_000, pause: turn, takes: 200_000 },
  // the smallest lease: every take leaves the lease at its low water and sends the next request (not awaited)
  { label: '10 000 keys, burst 20 (L 2)', keys: many, rps: 1e6, burst: 20, pause: ms20, takes: 50_000 },
];
const rounds = 5;
const show = (xs: number[]) => median(xs).toFixed(0).padStart(5);
for (const s of scenarios) {
  const memory = memoryRateBuckets();
  const runs = { memory: [] as number[], memoryCpu: [] as number[], leased: [] as number[], leasedCpu: [] as number[] };
  let last = { admitted: 0, leases: 0 };
  await measure(memory, s, 20_000); // warm up both, and give every key its first lease
  await measure(leased, s, 20_000);
  for (let r = 0; r < rounds; r++) {
    const m = await measure(memory, s, s.takes);
    runs.memory.push(m.ns);
    runs.memoryCpu.push(m.cpuNs);
    const l = await measure(leased, s, s.takes);
    runs.leased.push(l.ns);
    runs.leasedCpu.push(l.cpuNs);
    last = l;
  }
  process.stdout.write(
    `${s.label.padEnd(32)} request path: memory ${show(runs.memory)} ns, leased ${show(runs.leased)} ns per take;` +
      ` process CPU: memory ${show(runs.memoryCpu)} ns, leased ${show(runs.leasedCpu)} ns per take;` +
      ` leased: ${(last.admitted * 100).toFixed(1)}% admitted, ${(last.leases * 1000).toFixed(0)} lease requests per 1000 takes\n`,
  );
}

leased.stop();
await link.close();
for (const fn of cleanups) await fn();
