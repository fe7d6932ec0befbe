import { loadConfigFile } from '../config/index.js';
import { PortcullisError } from '../errors.js';
import { createLogger } from '../observe/index.js';
import { compareFleet, controlSocketFile, readFleet, RedisLink, type FleetRead, type RedisSettings } from '../state/index.js';
import { sendControl } from '../supervisor/index.js';
import { dataDirOf } from './data-dir.js';
import { formatFleet, formatInstance } from './fleet-table.js';
import { configFileFor } from './start-command.js';

export interface StatusOptions {
  readonly config?: string;
  readonly fleet?: boolean;
  readonly format: 'table' | 'json';
}

/** The exit status of `status --fleet` when the fleet does not agree (or no instance is registered). */
const fleetDisagreesExit = 4;

/**
 * `portcullis status`: the running instance of the config's dataDir, asked
 * over its control socket (exit 1 when none answers). With `--fleet`, every
 * instance of the config's cluster, read from Redis: exit 0 when they all
 * serve the same config and certificates, 4 when one differs, a record
 * cannot be read or none is registered.
 */
export async function runStatus(opts: StatusOptions): Promise<void> {
  if (opts.fleet) return runFleetStatus(opts);
  const socket = controlSocketFile(dataDirOf(configFileFor(opts.config)));
  const answer = await sendControl(socket, { command: 'status' }, 10_000);
  if (!answer.ok || !answer.status) {
    throw new PortcullisError('PCL_CONTROL_UNREACHABLE', `the instance on ${socket} did not describe itself (${answer.ok ? 'an older Portcullis?' : `${answer.code}: ${answer.message}`})`);
  }
  process.stdout.write(opts.format === 'json' ? `${JSON.stringify(answer.status, null, 2)}\n` : formatInstance(answer.status));
}

/** The state settings of the config: --fleet needs a cluster. */
function clusterSettings(configOption: string | undefined): RedisSettings {
  const file = configFileFor(configOption);
  if (file === undefined) throw new PortcullisError('PCL_CLI_USAGE', '--fleet reads state: from the config; give --config (there is no ./portcullis.yaml here)');
  const { state } = loadConfigFile(file);
  if (state.backend !== 'redis') {
    throw new PortcullisError('PCL_CLI_USAGE', `--fleet needs state.backend: redis; ${file} keeps its state in memory (a single instance): run portcullis status without --fleet`);
  }
  return state.redis;
}

async function runFleetStatus(opts: StatusOptions): Promise<void> {
  const settings = clusterSettings(opts.config);
  const link = await RedisLink.open(settings, createLogger('fatal'));
  let fleet: FleetRead;
  try {
    fleet = await readFleet(link);
  } catch (err) {
    throw new PortcullisError('PCL_STATE_UNREACHABLE', `could not read the fleet of cluster "${settings.cluster}" from ${settings.display}: ${(err as Error).message}; check that the Redis user may read pcl:${settings.cluster}:*`, { cause: err });
  } finally {
    await link.close();
  }
  const report = compareFleet(fleet);
  if (opts.format === 'json') {
    const instances = report.instances.map(({ record, flags }) => ({ ...record, flags }));
    process.stdout.write(`${JSON.stringify({ cluster: settings.cluster, agreed: report.agreed, reference: report.reference, unreadable: report.unreadable, instances }, null, 2)}\n`);
  } else {
    process.stdout.write(formatFleet(report, settings.cluster, settings.display));
  }
  if (!report.agreed) process.exitCode = fleetDisagreesExit;
}
