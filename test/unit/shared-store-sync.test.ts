import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Registry } from 'prom-client';
import type { ApiKeyRecord } from '../../src/access/index.js';
import { createLogger } from '../../src/observe/index.js';
import { RedisLink, type RedisSettings } from '../../src/state/index.js';
import { SharedStoreSync } from '../../src/supervisor/shared-store-sync.js';
import { sharedApiKeys, sharedDenyList, SharedStores } from '../../src/supervisor/shared-stores.js';
import { readDenyList, type DenyEntry } from '../../src/trust/index.js';
import { tempDir, type Scope } from '../helpers/proxy.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';

/*
 * How the instances of a cluster merge the deny list and API keys they
 * share through Redis (real redis-server, two links standing for two
 * instances): nothing a command made is lost to a concurrent change, an
 * outage or a Redis that lost its data, and a removal stays removed.
 */

const quiet = createLogger('fatal');

const settingsFor = (port: number): RedisSettings => ({ display: `redis://127.0.0.1:${port}/0`, host: '127.0.0.1', port, db: 0, username: null, password: null, tls: null, sentinels: [], cluster: 'unit' });

const fingerprint = (hex: string) => `sha256:${Array(32).fill(hex).join(':')}`;
const entry = (hex: string, addedAt = '2025-01-01T00:00:00.000Z'): DenyEntry => ({ fingerprint: fingerprint(hex), note: null, addedAt });
const keysOf = (entries: readonly DenyEntry[]) => entries.map((e) => ('fingerprint' in e ? e.fingerprint : '')).sort();

const record = (id: string, extra: Partial<ApiKeyRecord> = {}): ApiKeyRecord => ({
  id,
  name: `key ${id}`,
  hash: 'ab'.repeat(32),
  routes: null,
  createdAt: '2025-01-01T00:00:00.000Z',
  expiresAt: '2026-01-01T00:00:00.000Z',
  revokedAt: null,
  bindCert: null,
  bindUri: null,
  rotatedTo: null,
  ...extra,
});

/** One instance's view of a store: its sync, what it put in force last, and an event at each change in force. */
interface Instance<T> {
  readonly sync: SharedStoreSync<T>;
  readonly link: RedisLink;
  readonly dataDir: string;
  inForce: readonly T[];
  readonly changed: EventEmitter;
}

async function instance<T>(t: Scope, redis: RedisServer, store: (dataDir: () => string) => ConstructorParameters<typeof SharedStoreSync<T>>[0], initial: readonly T[] = []): Promise<Instance<T>> {
  const link = await RedisLink.open(settingsFor(redis.port), quiet);
  t.after(() => link.close());
  const dataDir = join(tempDir(t), 'data');
  mkdirSync(dataDir);
  const changed = new EventEmitter();
  const self: Instance<T> = { link, dataDir, inForce: initial, changed } as Instance<T>;
  const sync = new SharedStoreSync(store(() => dataDir), link, initial, async (entries) => {
    self.inForce = entries;
    changed.emit('change');
    return 'applied';
  }, quiet);
  t.after(() => sync.stop());
  return Object.assign(self, { sync });
}

describe('the shared deny list', () => {
  test('adds made on two instances at once both survive, and each local copy holds both', async (t) => {
    const redis = await startRedis(t);
    const [x, y] = await Promise.all([instance(t, redis, sharedDenyList), instance(t, redis, sharedDenyList)]);
    await Promise.all([x.sync.start(), y.sync.start()]);
    const [ax, ay] = await Promise.all([x.sync.change(() => [entry('AA')]), y.sync.change(() => [entry('BB')])]);
    assert.equal(ax.ok && ax.unsaved, 0);
    assert.equal(ay.ok && ay.unsaved, 0);
    await Promise.all([x.sync.resync(), y.sync.resync()]);
    for (const i of [x, y]) {
      assert.deepEqual(keysOf(i.inForce), [fingerprint('AA'), fingerprint('BB')]);
      assert.deepEqual(keysOf(readDenyList(i.dataDir)), [fingerprint('AA'), fingerprint('BB')]);
    }
    assert.equal((await redis.cli('HLEN', 'pcl:unit:deny-list')).stdout.trim(), '2');
  });

  test('a removal is not undone by an instance that missed it; an entry added again since is written back', async (t) => {
    const redis = await startRedis(t);
    const x = await instance(t, redis, sharedDenyList);
    await x.sync.start();
    await x.sync.change(() => [entry('AA'), entry('BB')]);
    const removed = await x.sync.remove(entry('AA'));
    assert.equal(removed.ok, true);
    // y was down: its local copy still has AA as it was, and BB added again later (a command while it was stopped)
    const y = await instance(t, redis, sharedDenyList, [entry('AA'), entry('CC', '2025-06-01T00:00:00.000Z')]);
    await y.sync.start();
    assert.deepEqual(keysOf(y.inForce), [fingerprint('BB'), fingerprint('CC')], 'the stale copy of AA is dropped, CC is written back');
    const late = await instance(t, redis, sharedDenyList, [entry('AA', '2025-06-01T00:00:00.000Z')]);
    await late.sync.start();
    assert.ok(keysOf(late.inForce).includes(fingerprint('AA')), 'AA added again after its removal is a new entry');
  });

  test('a command that adds again what was removed elsewhere wins, whatever its time: a denial is never lost', async (t) => {
    const redis = await startRedis(t);
    const x = await instance(t, redis, sharedDenyList);
    await x.sync.start();
    await x.sync.change(() => [entry('AA', '2025-06-01T00:00:00.000Z')]);
    await x.sync.remove(entry('AA'));
    await x.sync.change(() => [entry('AA', '2025-01-01T00:00:00.000Z')]);
    assert.deepEqual(keysOf(x.inForce), [fingerprint('AA')]);
    assert.equal((await redis.cli('HEXISTS', 'pcl:unit:deny-list', fingerprint('AA'))).stdout.trim(), '1');
  });

  test('an entry Redis holds in a form nobody can read stays in force where it was known (failing closed)', async (t) => {
    const redis = await startRedis(t);
    const x = await instance(t, redis, sharedDenyList);
    await x.sync.start();
    await x.sync.change(() => [entry('AA')]);
    await redis.cli('HSET', 'pcl:unit:deny-list', fingerprint('AA'), 'not json');
    await x.sync.resync();
    assert.deepEqual(keysOf(x.inForce), [fingerprint('AA')]);
  });

  test('during an outage a change is in force at once and queued; a Redis restarted empty gets it and every copy back', async (t) => {
    const redis = await startRedis(t);
    const [x, y] = await Promise.all([instance(t, redis, sharedDenyList), instance(t, redis, sharedDenyList)]);
    await Promise.all([x.sync.start(), y.sync.start()]);
    await x.sync.change(() => [entry('AA')]);
    await y.sync.resync();
    const lost = Promise.all([x, y].map((i) => new Promise<void>((resolve) => i.link.onLink((up) => !up && resolve()))));
    await redis.kill();
    await lost;
    const during = await x.sync.change(() => [entry('BB')]);
    assert.equal(during.ok, true);
    assert.match(during.ok ? during.message : '', /unreachable: 1 change\(s\) queued, written to it once it is back$/);
    assert.equal(x.sync.queued, 1);
    assert.deepEqual(keysOf(x.inForce), [fingerprint('AA'), fingerprint('BB')], 'in force here at once');
    const refused = await y.sync.remove(entry('AA'));
    assert.equal(refused.ok, false);
    assert.equal(!refused.ok && refused.code, 'PCL_STATE_UNAVAILABLE');

    const back = Promise.all([x, y].map((i) => new Promise<void>((resolve) => i.link.onLink((up) => up && resolve()))));
    await startRedis(t, { port: redis.port });
    await back;
    await x.sync.resync();
    await y.sync.resync();
    assert.equal(x.sync.queued, 0);
    assert.deepEqual(keysOf(y.inForce), [fingerprint('AA'), fingerprint('BB')]);
    assert.equal((await redis.cli('HLEN', 'pcl:unit:deny-list')).stdout.trim(), '2');
  });
});

describe('the shared API keys', () => {
  test('a revocation on one instance and a rotation of the same key on another both survive, in any order', async (t) => {
    const redis = await startRedis(t);
    const [x, y] = await Promise.all([instance(t, redis, sharedApiKeys), instance(t, redis, sharedApiKeys)]);
    await Promise.all([x.sync.start(), y.sync.start()]);
    await x.sync.change(() => [record('0123456789ab')]);
    await y.sync.resync();
    await Promise.all([
      x.sync.change((current) => [{ ...(current('0123456789ab') as ApiKeyRecord), revokedAt: '2025-03-01T00:00:00.000Z' }]),
      y.sync.change((current) => [{ ...(current('0123456789ab') as ApiKeyRecord), expiresAt: '2025-04-01T00:00:00.000Z', rotatedTo: 'ba9876543210' }, record('ba9876543210')]),
    ]);
    await Promise.all([x.sync.resync(), y.sync.resync()]);
    for (const i of [x, y]) {
      const old = i.inForce.find((r) => r.id === '0123456789ab');
      assert.equal(old?.revokedAt, '2025-03-01T00:00:00.000Z');
      assert.equal(old?.rotatedTo, 'ba9876543210');
      assert.equal(old?.expiresAt, '2025-04-01T00:00:00.000Z');
      assert.equal(i.inForce.length, 2);
    }
  });

  test('a record can only tighten: a copy that lacks the revocation does not undo it', async (t) => {
    const redis = await startRedis(t);
    const x = await instance(t, redis, sharedApiKeys);
    await x.sync.start();
    await x.sync.change(() => [record('0123456789ab', { revokedAt: '2025-03-01T00:00:00.000Z' })]);
    const y = await instance(t, redis, sharedApiKeys, [record('0123456789ab', { expiresAt: '2027-01-01T00:00:00.000Z' })]);
    await y.sync.start();
    assert.equal(y.inForce[0]?.revokedAt, '2025-03-01T00:00:00.000Z');
    assert.equal(y.inForce[0]?.expiresAt, '2026-01-01T00:00:00.000Z', 'the earlier expiry holds');
  });
});

describe('the state backend gauges', () => {
  test('say when Redis is lost and how many changes wait for it, and go back once they are written', async (t) => {
    const redis = await startRedis(t);
    const link = await RedisLink.open(settingsFor(redis.port), quiet);
    t.after(() => link.close());
    const dataDir = join(tempDir(t), 'data');
    const registry = new Registry();
    const inForce: { deny: readonly DenyEntry[] } = { deny: [] };
    const stores = new SharedStores(link, () => dataDir, { denyList: [], apiKeys: [] }, {
      denyList: async (entries) => {
        inForce.deny = entries;
        return 'applied';
      },
      apiKeys: async () => 'applied',
    }, registry, quiet);
    t.after(() => stores.stop());
    await stores.start();
    assert.match(await registry.metrics(), /^portcullis_state_backend_up 1$/m);
    const lost = new Promise<void>((resolve) => link.onLink((up) => !up && resolve()));
    await redis.kill();
    await lost;
    await stores.denyList.sync(null, { add: entry('AA') });
    const during = await registry.metrics();
    assert.match(during, /^portcullis_state_backend_up 0$/m);
    assert.match(during, /^portcullis_state_changes_queued\{store="deny_list"\} 1$/m);
    assert.match(during, /^portcullis_state_changes_queued\{store="api_keys"\} 0$/m);
    const back = new Promise<void>((resolve) => link.onLink((up) => up && resolve()));
    await startRedis(t, { port: redis.port });
    await back;
    // after the re-read the recovery started: a request waits for it, then exchanges once more
    const answer = await stores.denyList.sync(null, null);
    assert.match(answer.ok ? answer.message : '', /in the cluster's Redis/);
    const afterwards = await registry.metrics();
    assert.match(afterwards, /^portcullis_state_backend_up 1$/m);
    assert.match(afterwards, /^portcullis_state_changes_queued\{store="deny_list"\} 0$/m);
    assert.deepEqual(keysOf(inForce.deny), [fingerprint('AA')]);
  });
});
