import { ensureLocalCa, type LocalCa } from '../pki/index.js';
import { caFolder, resolveDataDir } from '../state/index.js';
import { certificateSource, issueFromLocalCa } from './certificate-sources.js';
import { buildConfig } from './load-config.js';
import type { Config } from './types.js';

export const quickstartHosts = ['localhost', '127.0.0.1', '::1'] as const;
export const quickstartListen = '127.0.0.1:8443';

export interface Quickstart {
  readonly config: Config;
  readonly ca: LocalCa;
}

/**
 * The zero-config default: a local CA under `dataDir/ca/` (made once, reused),
 * a localhost certificate it issued, and one default site that routes
 * everything to `builtin:whoami` on 127.0.0.1:8443.
 */
export async function quickstart(workDir: string, listen: string = quickstartListen): Promise<Quickstart> {
  const dataDir = resolveDataDir(workDir);
  await renewQuickstartCertificate(workDir);
  const ca = await ensureLocalCa(caFolder(dataDir));
  const { certFile, keyFile } = certificateSource.quickstart(dataDir, quickstartHosts).files;
  const raw = {
    listen: { https: listen },
    dataDir,
    sites: [
      {
        hosts: [...quickstartHosts],
        default: true,
        certificates: [{ cert: certFile, key: keyFile }],
        routes: [{ path: '/', upstream: 'builtin:whoami' }],
      },
    ],
  };
  return { config: buildConfig(raw, '(quickstart)', workDir), ca };
}

/** Issues the quickstart's localhost certificate, or renews it once two thirds of its lifetime have passed; returns the files written. */
export function renewQuickstartCertificate(workDir: string): Promise<string[]> {
  const dataDir = resolveDataDir(workDir);
  return issueFromLocalCa(dataDir, [certificateSource.quickstart(dataDir, quickstartHosts)]);
}
