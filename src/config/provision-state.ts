import { readFileSync } from 'node:fs';
import type { RawConfig } from './schema.js';
import { parseListenAddress } from './addresses.js';
import { unreadableReason, type ProvisionContext } from './provision-context.js';
import type { StateSettings } from './types.js';

const urlExample = 'e.g. "redis://127.0.0.1:6379/0" or "rediss://portcullis@redis.internal:6380/0"';

/**
 * `state:`: the memory backend, or where the cluster's Redis is and how to
 * reach it — URL (credentials, database, TLS), Sentinels, a password file,
 * the CA that verifies rediss://. Files are read here, once.
 */
export function provisionState(raw: RawConfig['state'], ctx: ProvisionContext): StateSettings {
  const redisOnly = (['redis', 'sentinels', 'passwordFile', 'ca', 'cert', 'key'] as const).filter((k) => raw[k] !== undefined);
  if (raw.backend === 'memory') {
    for (const k of redisOnly) ctx.issue(`state.${k}`, 'is used by backend: redis only; set state.backend: redis, or remove it');
    return { backend: 'memory' };
  }
  if (raw.redis === undefined) {
    ctx.issue('state.redis', `backend: redis needs the server's URL, ${urlExample}`);
    return { backend: 'memory' };
  }
  let url: URL;
  try {
    url = new URL(raw.redis);
  } catch {
    ctx.issue('state.redis', `is not a URL; use ${urlExample}`);
    return { backend: 'memory' };
  }
  const tlsOn = url.protocol === 'rediss:';
  if (url.protocol !== 'redis:' && !tlsOn) ctx.issue('state.redis', `use the redis:// or rediss:// (TLS) scheme, ${urlExample}`);
  const db = url.pathname === '' || url.pathname === '/' ? 0 : Number(url.pathname.slice(1));
  if (!Number.isInteger(db) || db < 0) ctx.issue('state.redis', `the path is the database number, e.g. "/0"; "${url.pathname}" is not one`);
  if (url.search || url.hash) ctx.issue('state.redis', 'takes no query or fragment; set TLS files with state.ca, state.cert and state.key');
  if (!tlsOn) for (const k of ['ca', 'cert', 'key'] as const) if (raw[k] !== undefined) ctx.issue(`state.${k}`, 'verifies TLS to Redis, which needs a rediss:// URL in state.redis');
  if ((raw.cert === undefined) !== (raw.key === undefined)) ctx.issue(raw.cert === undefined ? 'state.cert' : 'state.key', 'a client certificate to Redis needs both state.cert and state.key');
  const read = (field: string, path: string | undefined): string | null => {
    if (path === undefined) return null;
    try {
      return readFileSync(ctx.file(path), 'utf8');
    } catch (err) {
      ctx.issue(`state.${field}`, `cannot read ${ctx.file(path)} (${unreadableReason(err)})`);
      return null;
    }
  };
  const passwordFromFile = read('passwordFile', raw.passwordFile)?.replace(/\r?\n$/, '') ?? null;
  if (passwordFromFile !== null && url.password) ctx.issue('state.passwordFile', 'state.redis carries a password too; keep the password in one place (the file keeps it out of the config)');
  const username = url.username ? decodeURIComponent(url.username) : null;
  const shown = new URL(url.href);
  shown.password = '';
  return {
    backend: 'redis',
    redis: {
      display: shown.href,
      host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: url.port ? Number(url.port) : 6379,
      db,
      username,
      password: passwordFromFile ?? (url.password ? decodeURIComponent(url.password) : null),
      tls: tlsOn ? { ca: read('ca', raw.ca), cert: read('cert', raw.cert), key: read('key', raw.key) } : null,
      sentinels: (raw.sentinels ?? []).map((a) => {
        const { host, port } = parseListenAddress(a)!;
        return { host, port };
      }),
      cluster: raw.cluster,
    },
  };
}
