import { Command, Option } from 'commander';
import { PortcullisError, type ErrorCode } from '../errors.js';
import type { Level } from '../observe/index.js';
import { runSchema } from './schema-command.js';
import { runReload } from './reload-command.js';
import { runStart } from './start-command.js';
import { runValidate } from './validate-command.js';
import { runDeny, type DenyTarget } from './deny-command.js';
import { runKeys, type KeyCreateOptions, type KeyRotateOptions } from './keys-command.js';
import { runClients, type ClientsOptions } from './clients-command.js';
import { runReport, type ReportOptions } from './report-command.js';
import { runCaCrl, runCaEnrollToken, runCaInit, runCaIssue, runCaList, runCaRevoke, type CaOptions, type EnrollTokenOptions, type IssueOptions } from './ca-command.js';

/**
 * Exit codes: 0 ok, 1 runtime failure, 2 bad config or usage, 3 a
 * tightening change (deny add, keys revoke) applied by the running instance
 * but not saved under dataDir.
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

const program = new Command()
  .name('portcullis')
  .description('Secure-by-default TLS access proxy for APIs')
  .showHelpAfterError()
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));

program
  .command('start')
  .description('run the proxy; without --config it uses ./portcullis.yaml, or else the zero-config quickstart')
  .option('-c, --config <file>', 'config file (YAML)')
  .option('--listen <host:port>', 'quickstart only: address of the HTTPS listener', '127.0.0.1:8443')
  .addOption(new Option('--log-level <level>', 'diagnostic log level (default: log.level of the config)').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace']))
  .action((opts: { config?: string; listen: string; logLevel?: Level }, cmd: Command) =>
    runStart({ config: opts.config, listen: opts.listen, listenGiven: cmd.getOptionValueSource('listen') === 'cli', logLevel: opts.logLevel }).catch(fail),
  );

program
  .command('reload')
  .description('make the running instance re-read its config and certificates (same as SIGHUP), and print the outcome')
  .option('-c, --config <file>', 'the config file the instance was started with (finds its dataDir)')
  .action((opts: { config?: string }) => runReload(opts.config).catch(fail));

program
  .command('validate')
  .description('check a config file and every file it names, without starting')
  .argument('<file>', 'config file (YAML)')
  .action((file: string) => {
    try {
      runValidate(file);
    } catch (err) {
      fail(err);
    }
  });

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
  .action((opts: DenyTarget) => runDeny('add', opts).catch(fail));
denyTarget(deny.command('remove').description('unblock a certificate')).action((opts: DenyTarget) => runDeny('remove', opts).catch(fail));
deny
  .command('list')
  .description('print the blocked certificates')
  .option('-c, --config <file>', 'the config file (finds its dataDir)')
  .action((opts: DenyTarget) => runDeny('list', opts).catch(fail));

const ca = program.command('ca').description('the built-in CA under dataDir/ca: issue server and client certificates, revoke them, publish its CRL');
const collect = (value: string, previous: string[] = []) => [...previous, value];
const withConfig = (cmd: Command) => cmd.option('-c, --config <file>', 'the config file (finds its dataDir)');
withConfig(ca.command('init').description('create the CA (ECDSA P-256 root) unless it exists, and publish its CRL'))
  .option('--intermediate', 'also create an intermediate under the root that signs every certificate from now on (the root key can then be kept offline)')
  .action((opts: CaOptions & { intermediate?: boolean }) => runCaInit(opts).catch(fail));
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
  .action((opts: IssueOptions) => runCaIssue('client', opts).catch(fail));
withConfig(ca.command('issue-server').description('issue a server certificate (serverAuth) for one or more hosts'))
  .requiredOption('--host <name>', 'a DNS name or IP address (repeatable)', collect)
  .option('--days <n>', 'lifetime in days (default 90)')
  .option('--out <dir>', 'where to write the files (default: here)')
  .action((opts: IssueOptions) => runCaIssue('server', opts).catch(fail));
withConfig(ca.command('revoke').description('revoke a certificate by serial and publish a new CRL at once').argument('<serial>', 'the serial, as ca list prints it'))
  .option('--reason <reason>', 'CRL reason: unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation')
  .action((serial: string, opts: CaOptions & { reason?: string }) => runCaRevoke(serial, opts).catch(fail));
withConfig(ca.command('list').description('list the certificates issued, with their state')).action((opts: CaOptions) => runCaList(opts).catch(fail));
withClientIdentity(ca.command('enroll-token').description('make a single-use, expiring token with which a partner has its CSR certified on the admin listener (POST /v1/enroll); the certificate gets these names, whatever the CSR says'))
  .option('--expires <duration>', 'how long the token can be used, e.g. 30m, 24h, 7d (default 24h)')
  .action((opts: EnrollTokenOptions) => runCaEnrollToken(opts).catch(fail));
withConfig(ca.command('crl').description('publish a fresh CRL (higher CRL number) and print its file'))
  .option('--days <n>', 'validity of the CRL in days (default 7)')
  .action((opts: CaOptions & { days?: string }) => runCaCrl(opts).catch(fail));

program
  .command('clients')
  .description('list the client certificates that authenticated, soonest expiry first (the inventory under dataDir)')
  .option('-c, --config <file>', 'the config file (finds its dataDir)')
  .option('--expiring <duration>', 'only certificates expiring within this long, e.g. 30d')
  .option('--since <duration>', 'only certificates seen within this long, e.g. 7d')
  .option('--json', 'print JSON')
  .action((opts: ClientsOptions) => runClients(opts).catch(fail));

const keys = program.command('keys').description('API keys: created here, shown once, kept as hashes under dataDir; a running instance applies changes at once');
const configOption = (cmd: Command) => cmd.option('-c, --config <file>', 'the config file (finds its dataDir)');
configOption(keys.command('create').description('create a key and print it (once) on stdout'))
  .requiredOption('--name <name>', 'who or what the key is for')
  .option('--routes <paths>', 'comma-separated route paths it may be used on (default: every route that takes keys)')
  .option('--expires <duration>', 'lifetime, e.g. 90d (the default), or "never"')
  .option('--bind-cert <sha256>', 'only valid on connections presenting this client certificate ("sha256:AB:CD:…")')
  .option('--bind-uri <uri>', 'only valid on connections whose client certificate has this URI SAN (e.g. spiffe://…)')
  .action((opts: KeyCreateOptions) => runKeys('create', undefined, opts).catch(fail));
configOption(keys.command('list').description('print the keys (ids, names, state; never the keys)')).action((opts: KeyCreateOptions) => runKeys('list', undefined, opts).catch(fail));
configOption(keys.command('revoke').description('revoke a key at once').argument('<id>', 'the key id')).action((id: string, opts: KeyCreateOptions) => runKeys('revoke', id, opts).catch(fail));
configOption(keys.command('rotate').description('issue a successor with the same name, routes and binding; the old key works until the overlap ends').argument('<id>', 'the key id'))
  .option('--overlap <duration>', 'how long the old key keeps working, e.g. 24h (the default)')
  .action((id: string, opts: KeyRotateOptions) => runKeys('rotate', id, opts).catch(fail));

program
  .command('report')
  .description('reports from what the instance saw; weak-clients: sources, JA4 and server names that offered TLS < 1.2, no acceptable suite, or no TLS 1.3')
  .argument('<report>', 'weak-clients')
  .option('-c, --config <file>', 'the config file (finds its dataDir)')
  .option('--since <duration>', 'only clients seen within this long, e.g. 7d')
  .option('--json', 'print JSON')
  .action((kind: string, opts: ReportOptions) => runReport(kind, opts).catch(fail));

program
  .command('schema')
  .description('print the JSON Schema of the config file format (for editors)')
  .action(() => runSchema());

program.parseAsync(process.argv).catch(fail);
