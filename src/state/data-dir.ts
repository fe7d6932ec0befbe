import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';

/*
 * The layout of dataDir, spelled once: every path Portcullis keeps under it
 * is built here, named for what it holds. What a file contains stays with the
 * module that reads and writes it (the deny list's JSON with trust, the CA's
 * folder with pki, a summary's JSON with telemetry); only where it lives is
 * decided here. These names are where operators, backups and the docs find
 * the files: changing one moves existing state out of reach.
 */

/** The dataDir when the config names none, relative to the config file's folder (to the working directory without a config). */
export const defaultDataDir = './.portcullis';

/** The absolute dataDir: `configured` (the config's `dataDir`, the default when it names none) resolved against `base`, the config file's folder or the working directory. */
export function resolveDataDir(base: string, configured: string = defaultDataDir): string {
  return resolve(base, configured);
}

/** A certificate and its key, side by side: `<base>.pem` and `<base>.key`. */
export interface CertificateFiles {
  readonly certFile: string;
  readonly keyFile: string;
}

const certificateFiles = (base: string): CertificateFiles => ({ certFile: `${base}.pem`, keyFile: `${base}.key` });

/** A host name as a file name: a wildcard's "*" spelled "_", anything outside `A-Za-z0-9._-` spelled "_". */
const fileNameOf = (host: string): string => host.replace(/[^A-Za-z0-9._-]/g, '_');

/** The instant deny list: one JSON file, 0600, written by `portcullis deny` and read by the instance. */
export const denyListFile = (dataDir: string): string => join(dataDir, 'deny-list.json');

/** The API key store (hashes only): one JSON file, 0600, written by `portcullis keys` and read by the instance. */
export const apiKeysFile = (dataDir: string): string => join(dataDir, 'api-keys.json');

/** The control socket the CLI reaches the running instance through; it also marks the dataDir as taken by that instance. */
export const controlSocketFile = (dataDir: string): string => join(dataDir, 'control.sock');

/** The folder of the built-in CA (its root, intermediate, database and CRLs: their names are pki's). */
export const caFolder = (dataDir: string): string => join(dataDir, 'ca');

/** The admin API's bearer token (0600). */
export const adminTokenFile = (dataDir: string): string => join(dataDir, 'admin', 'token');

/** The admin listener's own certificate, issued by the built-in CA. */
export const adminCertificateFiles = (dataDir: string): CertificateFiles => certificateFiles(join(dataDir, 'admin', 'listener'));

/** The quickstart's localhost certificate, issued by the built-in CA. */
export const quickstartCertificateFiles = (dataDir: string): CertificateFiles => certificateFiles(join(dataDir, 'quickstart', 'localhost'));

/** A site's `internal: true` certificate: named after its first host (as the config normalises it). */
export const internalCertificateFiles = (dataDir: string, firstHost: string): CertificateFiles => certificateFiles(join(dataDir, 'internal', fileNameOf(firstHost)));

/** The folder of the client-certificate inventories, one file per process. */
export const inventoryFolder = (dataDir: string): string => join(dataDir, 'inventory');

/** One process's client-certificate inventory (`processName`: "main", "worker-<id>"). */
export const inventoryFile = (dataDir: string, processName: string): string => join(inventoryFolder(dataDir), `${processName}.json`);

/** The folder of the weak-client summaries, one file per process. */
export const weakClientsFolder = (dataDir: string): string => join(dataDir, 'weak-clients');

/** One process's weak-client summary (`processName`: "main", "worker-<id>"). */
export const weakClientsFile = (dataDir: string, processName: string): string => join(weakClientsFolder(dataDir), `${processName}.json`);

/**
 * Where the `memory` state backend keeps the value of a state key: the key is
 * a relative path under dataDir (the caller has checked it is a plain one).
 */
export const stateValueFile = (dataDir: string, key: string): string => join(dataDir, key);

/** The state keys of the certificate an ACME CA issued for a site: named after the site's first host. */
export function acmeCertificateKeys(firstHost: string): { cert: string; key: string } {
  const base = `acme/certificates/${fileNameOf(firstHost)}`;
  return { cert: `${base}.pem`, key: `${base}.key` };
}

/** The same, as files under dataDir (where the memory backend keeps them and the config loader reads them). */
export function acmeCertificateFiles(dataDir: string, firstHost: string): CertificateFiles {
  const keys = acmeCertificateKeys(firstHost);
  return { certFile: stateValueFile(dataDir, keys.cert), keyFile: stateValueFile(dataDir, keys.key) };
}

/** The state keys of the ACME account for one directory and contact: its key (secret) and its URL once registered. */
export function acmeAccountKeys(directory: string, email: string): { key: string; url: string } {
  const id = createHash('sha256').update(`${directory}\n${email}`).digest('hex').slice(0, 16);
  return { key: `acme/accounts/${id}/account.key`, url: `acme/accounts/${id}/account.url` };
}
