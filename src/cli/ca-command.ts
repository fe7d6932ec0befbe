import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { durationMs, durationPattern } from '../config/index.js';
import { PortcullisError } from '../errors.js';
import { buildPkcs12, commonNameProblem, revocationReasons, type CaStore, type IssuedLeaf, type RevocationReason } from '../pki/index.js';
import { writeFileAtomic } from '../state/index.js';
import { withCaStore } from './ca-store-for.js';
import { configFileFor } from './start-command.js';

export interface CaOptions {
  readonly config?: string;
}

export interface IssueOptions extends CaOptions {
  readonly name?: string;
  readonly host?: readonly string[];
  readonly uri?: readonly string[];
  readonly dns?: readonly string[];
  readonly days?: string;
  readonly out?: string;
  readonly p12PasswordFile?: string;
}

/** The CA of the config: the cluster's with state.backend: redis, else dataDir/ca's. */
const withStore = <T>(opts: CaOptions & { intermediate?: boolean }, fn: (store: CaStore) => Promise<T>) => withCaStore(configFileFor(opts.config), { intermediate: opts.intermediate === true }, fn);

/** Refuses a `--name` the CA would not certify exactly as given, before anything is created. */
function checkName(name: string): void {
  const problem = commonNameProblem(name);
  if (problem) throw new PortcullisError('PCL_CLI_USAGE', `--name ${JSON.stringify(name)} ${problem}`);
}

function days(value: string | undefined, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new PortcullisError('PCL_CLI_USAGE', `--days ${value}: use a whole number of days from 1 to ${max}`);
  return n;
}

/** `ca init`: creates the CA (ECDSA P-256 root, with `--intermediate` an issuing intermediate under it) unless it exists, and publishes its first CRLs. */
export async function runCaInit(opts: CaOptions & { intermediate?: boolean }): Promise<void> {
  await withStore(opts, (store) => initialised(store));
}

async function initialised(store: CaStore): Promise<void> {
  if (!store.crlFiles.every((f) => existsSync(f))) await store.publishCrl();
  const trust = store.issuingCrlFile ? [store.ca.certFile, store.ca.issuing.certFile] : [store.ca.certFile];
  process.stdout.write(
    `CA ${store.ca.cert.subject}\n  certificate ${store.ca.certFile}\n` +
      (store.issuingCrlFile ? `  issuing     ${store.ca.issuing.cert.subject}, ${store.ca.issuing.certFile} (signs every certificate; keep ca.key offline)\n` : '') +
      `  CRL         ${store.crlFiles.join(', ')}\n` +
      `  trust it for client certificates with clientAuth: { ca: [${trust.join(', ')}], crl: [${store.crlFiles.join(', ')}] }\n`,
  );
}

/** Writes name.pem (leaf), name.key (0600), name.chain.pem (leaf, intermediate if any, root) and, with a password, name.p12. */
async function writeOutputs(store: CaStore, leaf: IssuedLeaf, name: string, opts: IssueOptions): Promise<string[]> {
  const base = join(resolve(opts.out ?? '.'), name.replace(/[^A-Za-z0-9._-]/g, '_'));
  const caPem = readFileSync(store.ca.certFile, 'utf8');
  writeFileAtomic(`${base}.key`, leaf.keyPem, 0o600);
  writeFileAtomic(`${base}.pem`, leaf.certPem);
  writeFileAtomic(`${base}.chain.pem`, leaf.certPem + store.ca.chainPem + caPem);
  const files = [`${base}.pem`, `${base}.key`, `${base}.chain.pem`];
  if (opts.p12PasswordFile !== undefined) {
    const password = readFileSync(opts.p12PasswordFile, 'utf8').replace(/\r?\n$/, '');
    if (password.length < 8) throw new PortcullisError('PCL_CLI_USAGE', `--p12-password-file ${opts.p12PasswordFile}: use a password of at least 8 characters`);
    writeFileAtomic(`${base}.p12`, await buildPkcs12({ keyPem: leaf.keyPem, certPem: leaf.certPem, chainPems: [...(store.ca.chainPem ? [store.ca.chainPem] : []), caPem], password, friendlyName: name }), 0o600);
    files.push(`${base}.p12`);
  }
  return files;
}

export async function runCaIssue(usage: 'server' | 'client', opts: IssueOptions): Promise<void> {
  // the CA is opened before the arguments are checked, as it always was
  const { leaf, files } = await withStore(opts, async (store) => {
    const hosts = usage === 'server' ? [...(opts.host ?? [])] : [...(opts.dns ?? [])];
    if (usage === 'server' && hosts.length === 0) throw new PortcullisError('PCL_CLI_USAGE', 'give at least one --host');
    if (usage === 'client' && opts.name === undefined) throw new PortcullisError('PCL_CLI_USAGE', 'give --name, the client\'s common name');
    if (usage === 'client') checkName(opts.name as string);
    const name = usage === 'server' ? (hosts[0] as string) : (opts.name as string);
    const issued = await store.issue({ commonName: name, hosts, uris: opts.uri ?? [], usage, lifetimeDays: days(opts.days, usage === 'server' ? 90 : 30, usage === 'server' ? 397 : 825) });
    return { leaf: issued, files: await writeOutputs(store, issued, name, opts) };
  });
  process.stdout.write(`issued ${usage} certificate serial ${leaf.serial}, valid until ${leaf.notAfter.toISOString()}\n${files.map((f) => `  ${f}\n`).join('')}`);
}

export interface EnrollTokenOptions extends CaOptions {
  readonly name: string;
  readonly uri?: readonly string[];
  readonly dns?: readonly string[];
  readonly days?: string;
  readonly expires?: string;
}

/** `ca enroll-token`: prints a single-use token (once; only its hash is stored) for POST /v1/enroll on the admin listener. */
export async function runCaEnrollToken(opts: EnrollTokenOptions): Promise<void> {
  const expires = opts.expires ?? '24h';
  if (!durationPattern.test(expires) || durationMs(expires) < 60_000 || durationMs(expires) > 30 * 86_400_000) {
    throw new PortcullisError('PCL_CLI_USAGE', `--expires ${expires}: use a duration from 1m to 30d, e.g. 24h`);
  }
  checkName(opts.name);
  const { token, record, caFile } = await withStore(opts, async (store) => ({
    ...(await store.createEnrollment({ commonName: opts.name, uris: opts.uri ?? [], dns: opts.dns ?? [], lifetimeDays: days(opts.days, 30, 825), validForMs: durationMs(expires) })),
    caFile: store.ca.certFile,
  }));
  const names = [...record.uris, ...record.dns].join(' ');
  process.stdout.write(
    `${token}\n` +
      `single-use enrollment token ${record.id} for ${record.commonName}${names ? ` (${names})` : ''}, usable until ${record.expiresAt}; the certificate will be valid ${record.lifetimeDays} days.\n` +
      `Hand the partner the token, the CA certificate ${caFile} and the admin listener's address; it runs:\n` +
      `  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client.key -subj /CN=x -out client.csr\n` +
      `  curl --cacert ca.pem -H "Authorization: Bearer $TOKEN" --data-binary @client.csr https://ADMIN/v1/enroll -o client.pem\n`,
  );
}

export async function runCaRevoke(serial: string, opts: CaOptions & { reason?: string }): Promise<void> {
  const reason = (opts.reason ?? 'unspecified') as RevocationReason;
  if (!revocationReasons.includes(reason)) throw new PortcullisError('PCL_CLI_USAGE', `--reason ${opts.reason}: use one of ${revocationReasons.join(', ')}`);
  const { record, crlFiles } = await withStore(opts, async (store) => ({ record: await store.revoke(serial, reason), crlFiles: store.crlFiles }));
  process.stdout.write(`revoked ${record.serial} (${record.commonName}) at ${record.revokedAt}; CRLs published at ${crlFiles.join(', ')}\n`);
}

export async function runCaList(opts: CaOptions): Promise<void> {
  const { records, enrollments } = await withStore(opts, async (store) => ({ records: store.list(), enrollments: store.enrollments() }));
  if (records.length === 0) process.stdout.write('no certificate issued yet\n');
  for (const r of records) {
    const state = r.revokedAt ? `revoked ${r.revokedAt} (${r.revocationReason})` : new Date(r.notAfter).getTime() < Date.now() ? 'expired' : 'valid';
    process.stdout.write(`${r.serial}  ${r.usage.padEnd(6)}  ${r.commonName}  until ${r.notAfter}  ${state}${r.uris.length ? `  ${r.uris.join(' ')}` : ''}\n`);
  }
  for (const e of enrollments) {
    const state = e.usedAt ? `used ${e.usedAt} for ${e.serial}` : Date.parse(e.expiresAt) <= Date.now() ? 'expired' : `usable until ${e.expiresAt}`;
    process.stdout.write(`token ${e.id}  ${e.commonName}  ${state}${e.uris.length ? `  ${e.uris.join(' ')}` : ''}\n`);
  }
}

export async function runCaCrl(opts: CaOptions & { days?: string }): Promise<void> {
  process.stdout.write(`${await withStore(opts, (store) => store.publishCrl(days(opts.days, 7, 90)))}\n`);
}
