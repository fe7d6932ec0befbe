import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { certificateCovers, ensureLocalCa, issueServerCertificate, type LocalCa } from '../pki/index.js';
import { writeFileAtomic } from '../state/index.js';
import { buildConfig } from './load-config.js';
import type { Config } from './types.js';

export const quickstartHosts = ['localhost', '127.0.0.1', '::1'] as const;
export const quickstartListen = '127.0.0.1:8443';
const leafLifetimeDays = 90;
/** Reissue when less than this is left, so a restart always gets a comfortable margin. */
const reissueWithinMs = 30 * 86_400_000;

export interface Quickstart {
  readonly config: Config;
  readonly ca: LocalCa;
}

function leafIsUsable(certFile: string, ca: LocalCa): boolean {
  if (!existsSync(certFile)) return false;
  try {
    const leaf = new X509Certificate(readFileSync(certFile));
    const caCert = new X509Certificate(readFileSync(ca.certFile));
    return (
      leaf.checkIssued(caCert) &&
      leaf.verify(caCert.publicKey) &&
      new Date(leaf.validTo).getTime() - Date.now() > reissueWithinMs &&
      quickstartHosts.every((h) => certificateCovers(leaf, h))
    );
  } catch {
    return false;
  }
}

/**
 * The zero-config default: a local CA under `dataDir/ca/` (made once, reused),
 * a localhost certificate it issued, and one default site that routes
 * everything to `builtin:whoami` on 127.0.0.1:8443.
 */
export async function quickstart(workDir: string, listen: string = quickstartListen): Promise<Quickstart> {
  const dataDir = resolve(workDir, '.portcullis');
  const ca = await ensureLocalCa(join(dataDir, 'ca'));
  const certFile = join(dataDir, 'quickstart', 'localhost.pem');
  const keyFile = join(dataDir, 'quickstart', 'localhost.key');
  if (!leafIsUsable(certFile, ca)) {
    const pair = await issueServerCertificate(ca, quickstartHosts, leafLifetimeDays);
    writeFileAtomic(keyFile, pair.keyPem, 0o600);
    writeFileAtomic(certFile, pair.certPem);
  }
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
