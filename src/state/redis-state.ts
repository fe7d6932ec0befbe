import { randomBytes } from 'node:crypto';
import type { RedisLink } from './redis-link.js';
import type { LockLease, StateBackend } from './state-backend.js';

/** A lock expires this long after its holder's last renewal: a holder that died frees it by then. */
const lockTtlMs = 15_000;
const renewEveryMs = 5_000;
/** How often a waiting instance asks for a held lock again. */
const retryMs = 100;

// Lua runs atomically in Redis: compare-and-act on the holder's token and fence.
const renewScript = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;
const releaseScript = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;
const fencedWriteScript = `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[2], ARGV[2]) return 1 else return 0 end`;

/**
 * The `redis` backend: values and locks shared by every instance of the
 * cluster. A value is one Redis string under `pcl:<cluster>:v:<key>`; a lock
 * is `SET NX PX` with a random token, renewed while its holder runs, with a
 * fence counter beside it that every new holder increments.
 */
export function redisState(link: RedisLink): StateBackend {
  const redis = link.redis;
  const valueKey = (key: string) => link.key('v', key);
  return {
    read: (key) => redis.getBuffer(valueKey(key)),
    async write(key, value) {
      await redis.set(valueKey(key), value);
    },
    async withLock<T>(name: string, fn: (lease: LockLease) => Promise<T>): Promise<T> {
      const lockKey = link.key('lock', name);
      const fenceKey = link.key('fence', name);
      const token = randomBytes(16).toString('hex');
      while ((await redis.set(lockKey, token, 'PX', lockTtlMs, 'NX')) !== 'OK') await new Promise((r) => setTimeout(r, retryMs));
      const fence = await redis.incr(fenceKey);
      const lost = new AbortController();
      const renewal = setInterval(() => {
        redis.eval(renewScript, 1, lockKey, token, lockTtlMs).then(
          (renewed) => {
            if (renewed === 0) lost.abort(new Error(`lost the lock ${name}: held past its expiry`));
          },
          (err: Error) => lost.abort(err),
        );
      }, renewEveryMs);
      renewal.unref();
      const lease: LockLease = {
        fence,
        signal: lost.signal,
        write: async (key, value) => (await redis.eval(fencedWriteScript, 2, fenceKey, valueKey(key), String(fence), value)) === 1,
      };
      try {
        return await fn(lease);
      } finally {
        clearInterval(renewal);
        await redis.eval(releaseScript, 1, lockKey, token).catch(() => {}); // expires by itself otherwise
      }
    },
  };
}
