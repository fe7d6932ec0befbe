import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { inventoryFolder, weakClientsFolder, type RedisLink } from '../state/index.js';
import type { Logger } from '../observe/index.js';
import type { ClientInventory } from './client-inventory.js';
import type { WeakClients } from './weak-clients.js';

/** The summaries an instance keeps: the client certificate inventory and the weak-client summary. */
export type SummaryKind = 'inventory' | 'weak-clients';

/** A copy outlives its process's last write by the weak-client report's retention: a replaced instance's sightings still count for that long. */
const copyTtlMs = 90 * 86_400_000;
/** A CLI report asks every process to write its copy now, and waits this long at most for their answers. */
const flushWaitMs = 3_000;
const flushChannel = 'summaries-flush';
const flushedChannel = 'summaries-flushed';

/**
 * One process's name in the cluster: host, process ("main", "worker-<id>")
 * and a hash of its dataDir (two instances on one host have two dataDirs).
 * Stable across restarts, so a restarted instance, which reloads its summary
 * from its file, replaces its copy instead of adding a second one.
 */
export function summaryOwner(dataDir: string, processName: string): string {
  return `${hostname()}/${processName}/${createHash('sha256').update(dataDir).digest('hex').slice(0, 12)}`;
}

const copyKey = (link: RedisLink, kind: SummaryKind, owner: string) => link.key('summary', kind, owner);
const indexKey = (link: RedisLink, kind: SummaryKind) => link.key('summaries', kind);

/** Stores one process's summary text: its copy (expiring 90 days after the last write) and its place in the kind's index. */
async function storeCopy(link: RedisLink, kind: SummaryKind, owner: string, text: string): Promise<boolean> {
  if (!link.up) return false; // the outage is logged by the link; the copy stays due
  const results = await link.redis.multi().set(copyKey(link, kind, owner), text, 'PX', copyTtlMs).zadd(indexKey(link, kind), Date.now(), owner).exec();
  const failed = results?.find(([err]) => err)?.[0];
  if (failed) throw failed;
  return results !== null;
}

/**
 * With `state.backend: redis`, copies this process's summaries to the
 * cluster's Redis at every flush after a change (once a minute, at stop, and
 * when a report asks), beside the files under dataDir, which stay the local
 * copy. Redis lost: the copies stay due and are written at the first flush
 * after it is back, in full (Redis may have come back empty). Answers a
 * report's flush request on `pcl:<cluster>:ch:summaries-flush` once written.
 * Returns the function that stops it; null link: nothing to share.
 */
export function shareSummaries(link: RedisLink | null, parts: { readonly inventory: ClientInventory; readonly weakClients: WeakClients }, owner: string, log: Logger): () => void {
  if (!link) return () => {};
  parts.inventory.mirrorTo((text) => storeCopy(link, 'inventory', owner, text));
  parts.weakClients.mirrorTo((text) => storeCopy(link, 'weak-clients', owner, text));
  const flush = () => Promise.all([parts.inventory.flush(), parts.weakClients.flush()]);
  const offLink = link.onLink((up) => {
    if (!up) return;
    parts.inventory.mirrorAgain();
    parts.weakClients.mirrorAgain();
    void flush();
  });
  let unsubscribe: (() => void) | null = null;
  let stopped = false;
  link
    .subscribe(flushChannel, (request) => {
      void flush().then(() => link.publish(flushedChannel, `${request} ${owner}`).catch(() => {}));
    })
    .then(
      (off) => (stopped ? off() : (unsubscribe = off)),
      (err: Error) => log.warn({ event: 'summary_share_failed', error: err.message }, `cannot listen for report requests on the cluster's state backend (${err.message}); reports see this process's summaries as of its last minute flush`),
    );
  return () => {
    stopped = true;
    offLink();
    unsubscribe?.();
  };
}

/** The process names whose summary files are under this dataDir: their copies in Redis are this instance's own. */
function localProcesses(dataDir: string, kind: SummaryKind): string[] {
  try {
    return readdirSync(kind === 'inventory' ? inventoryFolder(dataDir) : weakClientsFolder(dataDir))
      .filter((f) => f.endsWith('.json'))
      .map((f) => f.slice(0, -'.json'.length));
  } catch {
    return [];
  }
}

/**
 * Asks every process of the cluster to write its summaries to Redis now and
 * waits for them (each answers once written; at most 3 s, after which the
 * copies of the last minute flush are read). Returns how many answered of how many were asked.
 */
export async function requestSummaryFlush(link: RedisLink): Promise<{ readonly answered: number; readonly asked: number }> {
  const request = randomBytes(8).toString('hex');
  let answered = 0;
  let done: () => void = () => {};
  let asked = Infinity;
  const all = new Promise<void>((resolve) => (done = resolve));
  const off = await link.subscribe(flushedChannel, (message) => {
    if (message.startsWith(`${request} `) && ++answered >= asked) done();
  });
  try {
    asked = await link.publish(flushChannel, request);
    if (answered >= asked) done();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([all, new Promise<void>((resolve) => (timer = setTimeout(resolve, flushWaitMs)))]);
    clearTimeout(timer);
    return { answered, asked };
  } finally {
    off();
  }
}

/**
 * The texts of the other instances' summaries of `kind`: every copy in the
 * cluster but those of this dataDir's processes, whose files are read
 * instead (they are at least as recent). Index entries whose copy expired are dropped.
 */
export async function clusterSummaryTexts(link: RedisLink, kind: SummaryKind, dataDir: string): Promise<string[]> {
  const own = new Set(localProcesses(dataDir, kind).map((p) => summaryOwner(dataDir, p)));
  const owners = (await link.redis.zrange(indexKey(link, kind), 0, -1)).filter((o) => !own.has(o));
  if (owners.length === 0) return [];
  const texts = await link.redis.mget(owners.map((o) => copyKey(link, kind, o)));
  const expired = owners.filter((_, i) => texts[i] === null);
  if (expired.length > 0) await link.redis.zrem(indexKey(link, kind), ...expired);
  return texts.filter((t): t is string => t !== null);
}
