import { existsSync } from 'node:fs';
import { formatHostPort, loadConfigFile, quickstart, type Config } from '../config/index.js';
import { PortcullisError } from '../errors.js';
import { startPortcullis } from '../portcullis.js';
import { createLogger } from '../telemetry/index.js';

export interface StartOptions {
  readonly config: string | undefined;
  readonly listen: string;
  readonly listenGiven: boolean;
  readonly logLevel: 'info';
}

const defaultConfigFile = 'portcullis.yaml';

/** Loads the config (file or quickstart), starts the proxy, and stops it on SIGINT/SIGTERM. */
export async function runStart(opts: StartOptions): Promise<void> {
  const log = createLogger(opts.logLevel);
  const file = opts.config ?? (existsSync(defaultConfigFile) ? defaultConfigFile : undefined);
  if (file !== undefined && opts.listenGiven) {
    throw new PortcullisError('PCL_CLI_USAGE', `--listen applies to the quickstart only; set listen.https in ${file} instead`);
  }
  let config: Config;
  let quickstartCa: string | null = null;
  if (file !== undefined) {
    config = loadConfigFile(file);
  } else {
    const qs = await quickstart(process.cwd(), opts.listen);
    config = qs.config;
    quickstartCa = qs.ca.certFile;
  }

  const proxy = await startPortcullis(config, log);
  const where = formatHostPort(proxy.address.address, proxy.address.port);
  log.info({ event: 'listening', https: where, config: config.source, sites: config.sites.length, profile: config.tls.profile.name }, `serving HTTPS on ${where}`);
  if (quickstartCa !== null) {
    const url = `https://localhost:${proxy.address.port}/`;
    process.stderr.write(
      [
        '',
        `  Portcullis quickstart is serving ${url}  (every route answers with builtin:whoami)`,
        `  Its local CA is ${quickstartCa}; trust it to connect:`,
        `    curl --cacert ${quickstartCa} ${url}`,
        `  Write ${defaultConfigFile} to proxy your own APIs (see the README).`,
        '',
        '',
      ].join('\n'),
    );
  }

  const stop = (signal: NodeJS.Signals): void => {
    log.info({ event: 'stopping', signal }, `received ${signal}, stopping`);
    proxy.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
