import type { FleetRead, InstanceRecord, ServedCertificate } from './fleet-records.js';

/** Why an instance stands out from the rest of its fleet. */
export type FleetFlag =
  | { readonly kind: 'config'; readonly detail: string }
  /** `sites`: the sites whose certificate serials differ from the reference's. */
  | { readonly kind: 'certificates'; readonly sites: readonly string[]; readonly detail: string };

export interface FleetEntry {
  readonly record: InstanceRecord;
  /** Empty when it serves what the reference serves. */
  readonly flags: readonly FleetFlag[];
}

/**
 * The fleet compared: each instance against the reference, which is what
 * most instances serve (on a tie, what the instance that accepted its config
 * last serves). `agreed`: at least one instance, none flagged, none
 * unreadable.
 */
export interface FleetReport {
  readonly instances: readonly FleetEntry[];
  readonly unreadable: readonly string[];
  readonly reference: { readonly configDigest: string; readonly certificates: Readonly<Record<string, readonly string[]>> } | null;
  readonly agreed: boolean;
}

/** Site → its serials, sorted: what "the same certificates" compares. */
export function servedSerials(certificates: readonly ServedCertificate[]): Record<string, string[]> {
  const bySite: Record<string, string[]> = {};
  for (const c of certificates) (bySite[c.site] ??= []).push(c.serial);
  for (const serials of Object.values(bySite)) serials.sort();
  return bySite;
}

const certificateKey = (r: InstanceRecord): string =>
  Object.entries(servedSerials(r.certificates))
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([site, serials]) => `${site}=${serials.join(',')}`)
    .join(';');

/** The instance holding the most common value of `key`; on a tie, among those, the one whose config was accepted last. */
function majorityHolder(records: readonly InstanceRecord[], key: (r: InstanceRecord) => string): InstanceRecord {
  const counts = new Map<string, number>();
  for (const r of records) counts.set(key(r), (counts.get(key(r)) ?? 0) + 1);
  const top = Math.max(...counts.values());
  const candidates = records.filter((r) => counts.get(key(r)) === top);
  return candidates.reduce((newest, r) => (r.configAppliedAt > newest.configAppliedAt ? r : newest));
}

function describeSerials(serials: readonly string[] | undefined): string {
  return serials === undefined || serials.length === 0 ? 'no certificate' : serials.join(', ');
}

function certificateFlag(record: InstanceRecord, reference: Record<string, string[]>, holders: number): FleetFlag | null {
  const own = servedSerials(record.certificates);
  const sites = [...new Set([...Object.keys(own), ...Object.keys(reference)])]
    .filter((site) => (own[site] ?? []).join(',') !== (reference[site] ?? []).join(','))
    .sort();
  if (sites.length === 0) return null;
  const detail = sites.map((site) => `${site} serves ${describeSerials(own[site])} where ${holders} instance(s) serve ${describeSerials(reference[site])}`).join('; ');
  return { kind: 'certificates', sites, detail };
}

/**
 * Compares the instances of a fleet: flags each one serving another config
 * (configDigest) or other certificate serials than the reference. Pure: the
 * admin API and `portcullis status --fleet` show the same verdicts.
 */
export function compareFleet(fleet: FleetRead): FleetReport {
  const records = fleet.instances;
  if (records.length === 0) return { instances: [], unreadable: fleet.unreadable, reference: null, agreed: false };
  const configRef = majorityHolder(records, (r) => r.configDigest);
  const certRef = majorityHolder(records, certificateKey);
  const configHolders = records.filter((r) => r.configDigest === configRef.configDigest).length;
  const certHolders = records.filter((r) => certificateKey(r) === certificateKey(certRef)).length;
  const reference = { configDigest: configRef.configDigest, certificates: servedSerials(certRef.certificates) };
  const instances = records.map((record): FleetEntry => {
    const flags: FleetFlag[] = [];
    if (record.configDigest !== reference.configDigest) {
      flags.push({ kind: 'config', detail: `serves config ${record.configDigest} (generation ${record.generation}) where ${configHolders} instance(s) serve ${reference.configDigest}` });
    }
    const cert = certificateFlag(record, reference.certificates, certHolders);
    if (cert) flags.push(cert);
    return { record, flags };
  });
  return { instances, unreadable: fleet.unreadable, reference, agreed: fleet.unreadable.length === 0 && instances.every((e) => e.flags.length === 0) };
}
