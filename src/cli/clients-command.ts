import { readInventory } from '../telemetry/index.js';
import { otherInstancesSummaries } from './cluster-summaries.js';
import { dataDirOf } from './data-dir.js';
import { configFileFor } from './start-command.js';
import { durationFlag, flushRunningInstance } from './instance-io.js';

export interface ClientsOptions {
  readonly config?: string;
  /** Only certificates expiring within this long (a duration such as "30d"). */
  readonly expiring?: string;
  /** Only certificates seen within this long. */
  readonly since?: string;
  readonly json?: boolean;
}

/**
 * `portcullis clients`: the client certificates that authenticated (from the
 * inventories every process keeps under dataDir and, with `state.backend:
 * redis`, those of every instance of the cluster), soonest expiry first — the
 * list to send partners before their certificates lapse.
 */
export async function runClients(opts: ClientsOptions): Promise<void> {
  const file = configFileFor(opts.config);
  const dataDir = dataDirOf(file);
  const expiring = durationFlag('--expiring', opts.expiring);
  const since = durationFlag('--since', opts.since);
  await flushRunningInstance(dataDir);
  const now = Date.now();
  const entries = readInventory(dataDir, await otherInstancesSummaries(file, dataDir, 'inventory'))
    .filter((e) => since === null || now - new Date(e.lastSeen).getTime() <= since)
    .filter((e) => expiring === null || (e.notAfter !== null && new Date(e.notAfter).getTime() - now <= expiring))
    .sort((a, b) => (a.notAfter ?? '9999').localeCompare(b.notAfter ?? '9999'));
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(entries, null, 2)}\n`);
    return;
  }
  if (entries.length === 0) {
    process.stdout.write('no client certificate matches\n');
    return;
  }
  for (const e of entries) {
    const days = e.notAfter === null ? '?' : Math.floor((new Date(e.notAfter).getTime() - now) / 86_400_000);
    process.stdout.write(`${e.notAfter ?? 'unknown'}  ${String(days).padStart(4)}d  ${e.subject}  issuer ${e.issuer}  serial ${e.serial}  seen ${e.count}x ${e.firstSeen} … ${e.lastSeen}  ${e.fingerprint}\n`);
  }
}
