import { Command, Option } from 'commander';
import { PortcullisError } from '../errors.js';
import type { Level } from '../telemetry/index.js';
import { runSchema } from './schema-command.js';
import { runReload } from './reload-command.js';
import { runStart } from './start-command.js';
import { runValidate } from './validate-command.js';
import { runDeny, type DenyTarget } from './deny-command.js';
import { runClients, type ClientsOptions } from './clients-command.js';

/** Exit codes: 0 ok, 1 runtime failure, 2 bad config or usage. */
function fail(err: unknown): never {
  if (err instanceof PortcullisError) {
    process.stderr.write(`portcullis: ${err.message}\n`);
    process.exit(err.code === 'PCL_CONFIG_INVALID' || err.code === 'PCL_CONFIG_YAML' || err.code === 'PCL_CONFIG_NOT_FOUND' || err.code === 'PCL_CLI_USAGE' ? 2 : 1);
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

program
  .command('clients')
  .description('list the client certificates that authenticated, soonest expiry first (the inventory under dataDir)')
  .option('-c, --config <file>', 'the config file (finds its dataDir)')
  .option('--expiring <duration>', 'only certificates expiring within this long, e.g. 30d')
  .option('--since <duration>', 'only certificates seen within this long, e.g. 7d')
  .option('--json', 'print JSON')
  .action((opts: ClientsOptions) => {
    try {
      runClients(opts);
    } catch (err) {
      fail(err);
    }
  });

program
  .command('schema')
  .description('print the JSON Schema of the config file format (for editors)')
  .action(() => runSchema());

program.parseAsync(process.argv).catch(fail);
