import { createHash } from 'node:crypto';
import { servedSerials, type FleetReport, type InstanceRecord } from '../state/index.js';

/** "5s", "3m", "2h", "4d": the largest whole unit. */
function formatUptime(seconds: number): string {
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7_200) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 172_800) return `${Math.floor(seconds / 3_600)}h`;
  return `${Math.floor(seconds / 86_400)}d`;
}

/** "3f2a9c1b0e4d": the first 12 hex digits of a "sha256:…" digest, enough to tell configs apart in a table. */
const shortDigest = (digest: string): string => digest.replace(/^sha256:/, '').slice(0, 12);

/** "2 (a1b2c3d4)": how many certificates, and a short digest of the site → serials map, equal exactly when the instances serve the same. */
function certificateCell(record: InstanceRecord): string {
  const serials = servedSerials(record.certificates);
  const key = JSON.stringify(Object.entries(serials).sort(([a], [b]) => a.localeCompare(b)));
  return `${record.certificates.length} (${createHash('sha256').update(key).digest('hex').slice(0, 8)})`;
}

const isoSeconds = (iso: string): string => iso.replace(/\.\d+Z$/, 'Z');

function reloadCell(record: InstanceRecord): string {
  const r = record.lastReload;
  if (r === null) return 'none';
  return r.ok ? `ok ${isoSeconds(r.at)}` : `refused ${r.code} ${isoSeconds(r.at)}`;
}

function table(rows: readonly (readonly string[])[]): string {
  const widths = (rows[0] as readonly string[]).map((_, i) => Math.max(...rows.map((r) => (r[i] as string).length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] as number))).join('  ')).join('\n');
}

/**
 * `status --fleet` as text: one row per instance, `!` before those that
 * differ from the reference, then why, and a closing line that says whether
 * the fleet agrees.
 */
export function formatFleet(report: FleetReport, cluster: string, where: string): string {
  if (report.instances.length === 0) {
    const unreadable = report.unreadable.length > 0 ? `; ${report.unreadable.length} record(s) could not be read (another Portcullis version?): ${report.unreadable.join(', ')}` : '';
    return `no instance of cluster "${cluster}" is registered in ${where}${unreadable}\n`;
  }
  const header = ['', 'INSTANCE', 'VERSION', 'NODE', 'GEN', 'CONFIG', 'CERTIFICATES', 'LAST RELOAD', 'UP', 'HTTPS', 'FLAGS'];
  const rows = report.instances.map(({ record: r, flags }) => [
    flags.length > 0 ? '!' : '',
    r.id,
    r.version,
    r.node,
    String(r.generation),
    shortDigest(r.configDigest),
    certificateCell(r),
    reloadCell(r),
    formatUptime(r.uptimeSeconds),
    r.listeners.https,
    flags.length > 0 ? flags.map((f) => f.kind).join(',') : '-',
  ]);
  const details = report.instances.flatMap(({ record, flags }) => [
    ...flags.map((f) => `! ${record.id}: ${f.detail}`),
    ...(record.lastReload && !record.lastReload.ok ? [`  ${record.id}: last reload refused (${record.lastReload.code}): ${record.lastReload.message}`] : []),
  ]);
  if (report.unreadable.length > 0) details.push(`! ${report.unreadable.length} record(s) could not be read (another Portcullis version?): ${report.unreadable.join(', ')}`);
  const flagged = report.instances.filter((e) => e.flags.length > 0).length;
  const n = report.instances.length;
  const ref = report.reference as NonNullable<FleetReport['reference']>;
  const summary = report.agreed
    ? `${n} instance(s) of cluster "${cluster}" serve config ${shortDigest(ref.configDigest)} and the same certificates`
    : `${flagged} of ${n} instance(s) of cluster "${cluster}" differ from what most serve (config ${shortDigest(ref.configDigest)}): marked !`;
  return `${table([header, ...rows])}\n${details.length > 0 ? `\n${details.join('\n')}\n` : ''}\n${summary}\n`;
}

/** `status` (one instance, over its control socket) as text. */
export function formatInstance(r: InstanceRecord): string {
  const reload = r.lastReload;
  const lines = [
    `instance      ${r.id}`,
    `version       ${r.version} (node ${r.node})`,
    `state         ${r.cluster === null ? 'memory (this instance only)' : `redis, cluster "${r.cluster}"`}`,
    `started       ${isoSeconds(r.startedAt)} (up ${formatUptime(r.uptimeSeconds)})`,
    `config        generation ${r.generation}, ${r.configDigest}, applied ${isoSeconds(r.configAppliedAt)}`,
    `last reload   ${reload === null ? 'none since start' : `${reload.ok ? 'ok' : `refused ${reload.code}`} at ${isoSeconds(reload.at)} (${reload.trigger}): ${reload.message}`}`,
    `listening     https ${r.listeners.https}${r.listeners.http ? `, http ${r.listeners.http}` : ''}${r.listeners.admin ? `, admin ${r.listeners.admin}` : ''}${r.workers === null ? '' : `, ${r.workers} workers`}`,
    `certificates${r.certificates.length === 0 ? '  none' : ''}`,
    ...r.certificates.map((c) => `  ${c.site}  serial ${c.serial}  ${c.key}  until ${isoSeconds(c.notAfter)}`),
  ];
  return `${lines.join('\n')}\n`;
}
