import cluster from 'node:cluster';
import { existsSync } from 'node:fs';
import { PortcullisError } from '../errors.js';
import { fileSource, joinClusterBeforeLoad, quickstartSource, runControlPlane, runWorker } from '../supervisor/index.js';
import { createLogger, type Level } from '../observe/index.js';

export interface StartOptions {
  readonly config: string | undefined;
  readonly listen: string;
  readonly listenGiven: boolean;
  readonly logLevel: Level | undefined;
}

export const defaultConfigFile = 'portcullis.yaml';

/** The config file `start` and `reload` use: --config, else ./portcullis.yaml when it exists, else none (the quickstart). */
export function configFileFor(option: string | undefined): string | undefined {
  return option ?? (existsSync(defaultConfigFile) ? defaultConfigFile : undefined);
}

/**
 * Loads the config (file or quickstart) and runs the proxy: its control
 * plane here, serving in this process when `workers` is 1, else through that
 * many cluster workers. A cluster worker re-runs this command and takes the
 * worker role.
 */
export async function runStart(opts: StartOptions): Promise<void> {
  const file = configFileFor(opts.config);
  if (file !== undefined && opts.listenGiven) {
    throw new PortcullisError('PCL_CLI_USAGE', `--listen applies to the quickstart only; set listen.https in ${file} instead`);
  }
  if (cluster.isWorker) {
    // a worker serves the config text its primary hands it, never the file as it is now
    await runWorker(fileSource(file as string), opts.logLevel);
    return;
  }
  if (file === undefined) {
    const quick = quickstartSource(process.cwd(), opts.listen);
    const initial = await quick.load();
    const { port } = await runControlPlane(quick, initial, createLogger(opts.logLevel ?? initial.config.log.level));
    const url = `https://localhost:${port}/`;
    process.stderr.write(
      [
        '',
        `  Portcullis quickstart is serving ${url}  (every route answers with builtin:whoami)`,
        `  Its local CA is ${quick.caFile}; trust it to connect:`,
        `    curl --cacert ${quick.caFile} ${url}`,
        `  Write ${defaultConfigFile} to proxy your own APIs (see the README).`,
        '',
        '',
      ].join('\n'),
    );
    return;
  }
  const source = fileSource(file);
  // with state.backend: redis, the cluster's CA and ACME certificates first: the config may name them
  await joinClusterBeforeLoad(file, createLogger(opts.logLevel ?? 'info'));
  const initial = await source.load();
  // The log level comes from the config unless the command line says otherwise.
  await runControlPlane(source, initial, createLogger(opts.logLevel ?? initial.config.log.level));
}
