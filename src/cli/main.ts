import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { PortcullisError, type ErrorCode } from '../errors.js';
import type { Level } from '../observe/index.js';
import type { DenyTarget } from './deny-command.js';
import type { KeyCreateOptions, KeyRotateOptions } from './keys-command.js';
import type { ClientsOptions } from './clients-command.js';
import type { ReportOptions } from './report-command.js';
import type { CaOptions, EnrollTokenOptions, IssueOptions } from './ca-command.js';
import type { StatusOptions } from './status-command.js';

/**
 * Exit codes: 0 ok, 1 runtime failure, 2 bad config or usage, 3 a
 * tightening change (deny add, keys revoke) applied by the running instance
 * but not saved under dataDir, 4 `status --fleet` found instances that
 * differ (or none).
 */
function exitCodeOf(code: ErrorCode): number {
  if (code === 'PCL_CONFIG_INVALID' || code === 'PCL_CONFIG_YAML' || code === 'PCL_CONFIG_NOT_FOUND' || code === 'PCL_CLI_USAGE') return 2;
  return code === 'PCL_STATE_NOT_PERSISTED' ? 3 : 1;
}

function fail(err: unknown): never {
  if (err instanceof PortcullisError) {
    process.stderr.write(`portcullis: ${err.code}: ${err.message}\n`);
    process.exit(exitCodeOf(err.code));
  }
  process.stderr.write(`portcullis: unexpected error: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
}

/**
 * The version in package.json, two folders up from this file both in
 * src/cli/ (run through tsx) and in dist/cli/ (run by bin/portcullis.js).
 * Read, not imported: an import would pull package.json, outside rootDir
 * src/, into the build.
 */
const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

const program = new Command()
  .name('portcullis')
  .description('Secure-by-default TLS access proxy for APIs')
  .version(version, '-V, --version', 'print the version')
  // -v too, as node and npm take it; commander allows one short flag per option
  .addOption(new Option('-v').hideHelp())
  .on('option:v', () => {
    process.stdout.write(`${version}\n`);
    process.exit(0);
  })
  .showHelpAfterError()
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));

/*
 * Each action imports its command's module when it runs: those modules pull
 * in the whole proxy, which --help, --version and a usage error must not wait
 * for (test/e2e/cli-usage.test.ts checks what --help loads). Only their types
 * are imported above, and erased. An action's failure rejects parseAsync, at
 * the end, whose catch is fail.
 */
program
  .command('start')
  .description('run the proxy; without --config it uses ./portcullis.yaml, or else the zero-config quickstart')
  .option('-c, --config <file>', 'config file (YAML)')
  .option('--listen <host:port>', 'quickstart only: address of the HTTPS listener', '127.0.0.1:8443')
  .addOption(new Option('--log-level <level>', 'diagnostic log level (default: log.level of the config)').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace']))
  .action(async (opts: { config?: string; listen: string; logLevel?: Level }, cmd: Command) =>
    (await import('./start-command.js')).runStart({ config: opts.config, listen: opts.listen, listenGiven: cmd.getOptionValueSource('listen') === 'cli', logLevel: opts.logLevel }),
  );

program
  .command('reload')
  .description('make the running instance re-read its config and certificates (same as SIGHUP), and print the outcome')
  .option('-c, --config <file>', 'the config file the instance was started with (finds its dataDir)')
  .action(async (opts: { config?: string }) => (await import('./reload-command.js')).runReload(opts.config));

program
  .command('status')
  .description('describe the running instance (over its control socket); with --fleet, every instance of the cluster (from Redis), exit status 4 when one serves another config or other certificates')
  .option('-c, --config <file>', 'the config file (finds the dataDir; with --fleet, the state: settings)')
  .option('--fleet', 'list every instance of the cluster (needs state.backend: redis)')
  .addOption(new Option('--format <format>', 'output format').choices(['table', 'json']).default('table'))
  .action(async (opts: StatusOptions) => (await import('./status-command.js')).runStatus(opts));

program
  .command('validate')
  .description('check a config file and every file it names, without starting')
  .argument('<file>', 'config file (YAML)')
  .action(async (file: string) => (await import('./validate-command.js')).runValidate(file));

const denyCommand = () => import('./deny-command.js');
const deny = program.command('deny').description('the instant deny list: block client certificates now, without waiting for a CRL (persisted under dataDir)');
const denyTarget = (cmd: Command) =>
  cmd
    .option('-c, --config <file>', 'the config file (finds its dataDir)')
    .option('--cert <file>', 'the certificate (PEM or DER) to block, by its fingerprint')
    .option('--fingerprint <sha256>', 'SHA-256 fingerprint, "sha256:AB:CD:…" as the logs print it')
    .option('--serial <hex>', 'serial number (with --issuer), as the logs print it')
    .option('--issuer <dn>', 'issuer name (with --serial), e.g. "CN=Clients CA,O=Example"');
denyTarget(deny.command('add').description('block a certificate; open connections presenting it are closed at once'))
  .option('--note <text>', 'why (shown by deny list)')
  .action(async (opts: DenyTarget) => (await denyCommand()).runDeny('add', opts));
denyTarget(deny.command('remove').description('unblock a certificate')).action(async (opts: DenyTarget) => (await denyCommand()).runDeny('remove', opts));
deny
  .command('list')
  .description('print the blocked certificates')
  .option('-c, --config <file>', 'the config file (finds its dataDir)')
  .action(async (opts: DenyTarget) => (await denyCommand()).runDeny('list', opts));

const caCommand = () => import('./ca-command.js');
const ca = program.command('ca').description('the built-in CA under dataDir/ca: issue server and client certificates, revoke them, publish its CRL');
const collect = (value: string, previous: string[] = []) => [...previous, value];
const withConfig = (cmd: Command) => cmd.option('-c, --config <file>', 'the config file (finds its dataDir)');
withConfig(ca.command('init').description('create the CA (ECDSA P-256 root) unless it exists, and publish its CRL'))
  .option('--intermediate', 'also create an intermediate under the root that signs every certificate from now on (the root key can then be kept offline)')
  .action(async (opts: CaOptions & { intermediate?: boolean }) => (await caCommand()).runCaInit(opts));
/** The identity of a client certificate: what issue-client issues directly and enroll-token fixes for an enrollment. */
const withClientIdentity = (cmd: Command) =>
  withConfig(cmd)
    .requiredOption('--name <cn>', 'the client\'s common name')
    .option('--uri <uri>', 'a URI SAN, e.g. spiffe://example.test/billing (repeatable)', collect)
    .option('--dns <name>', 'a DNS SAN (repeatable)', collect)
    .option('--days <n>', 'lifetime of the certificate in days (default 30)');
withClientIdentity(ca.command('issue-client').description('issue a client certificate (clientAuth): name.pem, name.key, name.chain.pem, and name.p12 with a password'))
  .option('--out <dir>', 'where to write the files (default: here)')
  .option('--p12-password-file <file>', 'also write a PKCS#12 bundle protected by the password in this file')
  .action(async (opts: IssueOptions) => (await caCommand()).runCaIssue('client', opts));
withConfig(ca.command('issue-server').description('issue a server certificate (serverAuth) for one or more hosts'))
  .requiredOption('--host <name>', 'a DNS name or IP address (repeatable)', collect)
  .option('--days <n>', 'lifetime in days (default 90)')
  .option('--out <dir>', 'where to write the files (default: here)')
  .action(async (opts: IssueOptions) => (await caCommand()).runCaIssue('server', opts));
withConfig(ca.command('revoke').description('revoke a certificate by serial and publish a new CRL at once').argument('<serial>', 'the serial, as ca list prints it'))
  .option('--reason <reason>', 'CRL reason: unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation')
  .action(async (serial: string, opts: CaOptions & { reason?: string }) => (await caCommand()).runCaRevoke(serial, opts));
withConfig(ca.command('list').description('list the certificates issued, with their state')).action(async (opts: CaOptions) => (await caCommand()).runCaList(opts));
withClientIdentity(ca.command('enroll-token').description('make a single-use, expiring token with which a partner has its CSR certified on the admin listener (POST /v1/enroll); the certificate gets these names, whatever the CSR says'))
  .option('--expires <duration>', 'how long the token can be used, e.g. 30m, 24h, 7d (default 24h)')
  .action(async (opts: EnrollTokenOptions) => (await caCommand()).runCaEnrollToken(opts));
withConfig(ca.command('crl').description('publish a fresh CRL (higher CRL number) and print its file'))
  .option('--days <n>', 'validity of the CRL in days (default 7)')
  .action(async (opts: CaOptions & { days?: string }) => (await caCommand()).runCaCrl(opts));

program
  .command('clients')
  .description('list the client certificates that authenticated, soonest expiry first (the inventory under dataDir)')
  .option('-c, --config <file>', 'the config file (finds its dataDir)')
  .option('--expiring <duration>', 'only certificates expiring within this long, e.g. 30d')
  .option('--since <duration>', 'only certificates seen within this long, e.g. 7d')
  .option('--json', 'print JSON')
  .action(async (opts: ClientsOptions) => (await import('./clients-command.js')).runClients(opts));

const keysCommand = () => import('./keys-command.js');
const keys = program.command('keys').description('API keys: created here, shown once, kept as hashes under dataDir; a running instance applies changes at once');
const configOption = (cmd: Command) => cmd.option('-c, --config <file>', 'the config file (finds its dataDir)');
configOption(keys.command('create').description('create a key and print it (once) on stdout'))
  .requiredOption('--name <name>', 'who or what the key is for')
  .option('--routes <paths>', 'comma-separated route paths it may be used on (default: every route that takes keys)')
  .option('--expires <duration>', 'lifetime, e.g. 90d (the default), or "never"')
  .option('--bind-cert <sha256>', 'only valid on connections presenting this client certificate ("sha256:AB:CD:…")')
  .option('--bind-uri <uri>', 'only valid on connections whose client certificate has this URI SAN (e.g. spiffe://…)')
  .action(async (opts: KeyCreateOptions) => (await keysCommand()).runKeys('create', undefined, opts));
configOption(keys.command('list').description('print the keys (ids, names, state; never the keys)')).action(async (opts: KeyCreateOptions) => (await keysCommand()).runKeys('list', undefined, opts));
configOption(keys.command('revoke').description('revoke a key at once').argument('<id>', 'the key id')).action(async (id: string, opts: KeyCreateOptions) => (await keysCommand()).runKeys('revoke', id, opts));
configOption(keys.command('rotate').description('issue a successor with the same name, routes and binding; the old key works until the overlap ends').argument('<id>', 'the key id'))
  .option('--overlap <duration>', 'how long the old key keeps working, e.g. 24h (the default)')
  .action(async (id: string, opts: KeyRotateOptions) => (await keysCommand()).runKeys('rotate', id, opts));

program
  .command('report')
  .description('reports from what the instance saw; weak-clients: sources, JA4 and server names that offered TLS < 1.2, no acceptable suite, or no TLS 1.3')
  .argument('<report>', 'weak-clients')
  .option('-c, --config <file>', 'the config file (finds its dataDir)')
  .option('--since <duration>', 'only clients seen within this long, e.g. 7d')
  .option('--json', 'print JSON')
  .action(async (kind: string, opts: ReportOptions) => (await import('./report-command.js')).runReport(kind, opts));

program
  .command('schema')
  .description('print the JSON Schema of the config file format (for editors)')
  .action(async () => (await import('./schema-command.js')).runSchema());

program.parseAsync(process.argv).catch(fail);
