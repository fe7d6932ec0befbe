import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CliProcess } from './cli-process.js';
import { startInstance } from './cli-logs.js';
import type { Leaf } from './pki.js';
import { tempDir, type Scope } from './proxy.js';

export interface ClusterMember {
  readonly cli: CliProcess;
  readonly port: number;
  /** Its own folder: config file and dataDir (instances of one cluster never share a dataDir). */
  readonly dir: string;
}

/**
 * Starts one Portcullis instance of a cluster on `state.redis` (killed after
 * the test): site api.test with `leaf`, the built-in whoami upstream,
 * `stateExtra` added to the state block (e.g. "cluster: a, passwordFile: pw")
 * and `body` appended at the top level (more sites keys, detector, ...).
 */
export async function startMember(t: Scope, redisUrl: string, leaf: Leaf, opts: { stateExtra?: string; siteExtra?: string; body?: string } = {}): Promise<ClusterMember> {
  const dir = tempDir(t);
  const file = join(dir, 'portcullis.yaml');
  writeFileSync(
    file,
    `listen: { https: "127.0.0.1:0" }
log: { access: off }
timeouts: { drain: 2s }
state: { backend: redis, redis: "${redisUrl}"${opts.stateExtra ? `, ${opts.stateExtra}` : ''} }
${opts.body ?? ''}
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes: [{ path: /, upstream: "builtin:whoami" }]${opts.siteExtra ?? ''}
`,
  );
  const { cli, port } = await startInstance(t, dir, file);
  return { cli, port, dir };
}
