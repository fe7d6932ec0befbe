import { certificateSource, issueFromLocalCa } from './certificate-sources.js';
import { readLeniently } from './lenient-read.js';

/**
 * Issues or renews the `internal: true` certificates config text (as if from
 * `file`) asks for, before it is loaded (loading only reads files): one per
 * site, for all its hosts. Reads the text leniently: whatever is wrong with it
 * is for the load that follows to report. Returns the files it wrote.
 */
export function issueInternalCertificates(text: string, file: string): Promise<string[]> {
  const { dataDir, internalSites } = readLeniently(text, file);
  return issueFromLocalCa(dataDir, internalSites.map(({ hosts }) => certificateSource.internal(dataDir, hosts)));
}
