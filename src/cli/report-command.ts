import { PortcullisError } from '../errors.js';
import { readWeakClients, type WeakClientEntry } from '../telemetry/index.js';
import { otherInstancesSummaries } from './cluster-summaries.js';
import { dataDirOf } from './data-dir.js';
import { configFileFor } from './start-command.js';
import { durationFlag, flushRunningInstance } from './instance-io.js';

export interface ReportOptions {
  readonly config?: string;
  /** Only clients seen within this long (a duration such as "7d"). */
  readonly since?: string;
  readonly json?: boolean;
}

/** The weaknesses, most urgent first, with what they mean for the operator. */
const weaknesses: readonly { readonly name: WeakClientEntry['weakness']; readonly meaning: string }[] = [
  { name: 'legacy_protocol', meaning: 'offered nothing newer than TLS 1.1: refused by every profile; these clients cannot connect until they are upgraded' },
  { name: 'weak_ciphers_only', meaning: 'offered TLS 1.2 but no AEAD suite with forward secrecy: refused (no_shared_cipher) until they enable ECDHE with AES-GCM or ChaCha20-Poly1305' },
  { name: 'no_tls13', meaning: 'offered TLS 1.2 at most: served by the intermediate profile, refused once the minimum is raised to TLS 1.3 (tls.profile: modern)' },
  {
    name: 'no_pq_key_share',
    meaning: 'offered TLS 1.3 but no post-quantum hybrid key share (X25519MLKEM768): served, with a classical key exchange that a recording made today could be decrypted from later; informational, nothing refuses them',
  },
];

const columns = ['address', 'offered', 'sni', 'ja4', 'count', 'refused', 'last reason', 'first seen', 'last seen'] as const;

function row(e: WeakClientEntry): string[] {
  return [e.address, e.offered ?? '-', e.sni ?? '-', e.ja4 ?? '-', String(e.count), String(e.refused), e.lastReason ?? 'accepted', e.firstSeen, e.lastSeen];
}

function table(rows: string[][]): string {
  const widths = columns.map((c, i) => Math.max(c.length, ...rows.map((r) => (r[i] as string).length)));
  const line = (cells: readonly string[]) => `  ${cells.map((c, i) => c.padEnd(widths[i] as number)).join('  ')}`.trimEnd();
  return [line(columns.map((c) => c.toUpperCase())), ...rows.map(line)].join('\n');
}

/**
 * `portcullis report weak-clients`: the sources, JA4 fingerprints and server
 * names that tried TLS below 1.2, offered no acceptable suite, or offered no
 * TLS 1.3 — the list an operator needs before raising the minimum version —
 * from the summaries every process keeps under dataDir and, with
 * `state.backend: redis`, those of every instance of the cluster.
 */
export async function runReport(kind: string, opts: ReportOptions): Promise<void> {
  if (kind !== 'weak-clients') throw new PortcullisError('PCL_CLI_USAGE', `there is no report "${kind}"; use: portcullis report weak-clients [--since 7d]`);
  const file = configFileFor(opts.config);
  const dataDir = dataDirOf(file);
  const since = durationFlag('--since', opts.since);
  await flushRunningInstance(dataDir);
  const now = Date.now();
  const order = (w: WeakClientEntry['weakness']) => weaknesses.findIndex((x) => x.name === w);
  const entries = readWeakClients(dataDir, await otherInstancesSummaries(file, dataDir, 'weak-clients'))
    .filter((e) => since === null || now - new Date(e.lastSeen).getTime() <= since)
    .sort((a, b) => order(a.weakness) - order(b.weakness) || b.count - a.count || b.lastSeen.localeCompare(a.lastSeen));
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(entries, null, 2)}\n`);
    return;
  }
  const window = opts.since ? ` in the last ${opts.since}` : '';
  if (entries.length === 0) {
    process.stdout.write(`no client offered weak TLS${window} (dataDir ${dataDir})\n`);
    return;
  }
  const sections = weaknesses.flatMap(({ name, meaning }) => {
    const rows = entries.filter((e) => e.weakness === name).map(row);
    return rows.length === 0 ? [] : [`${name} (${rows.length}): ${meaning}\n${table(rows)}`];
  });
  process.stdout.write(`clients that offered weak TLS${window} (dataDir ${dataDir})\n\n${sections.join('\n\n')}\n`);
}
