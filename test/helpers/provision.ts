import { configSchema, type RawRoute, type RawSite } from '../../src/config/schema.js';
import { createProvisionContext, type CollectingContext } from '../../src/config/provision-context.js';
import { tempDir, type Scope } from './proxy.js';

/**
 * For testing one config section's provisioning directly: a context over a
 * fresh temp folder (relative paths start there, dataDir is its
 * `.portcullis`), and raw sections made by the schema itself, with its
 * defaults, as the loader makes them.
 */

export interface TestContext extends CollectingContext {
  /** The folder relative paths start at, removed after the test. */
  readonly dir: string;
}

export function provisionContextIn(t: Scope, opts: { hasHttpListener?: boolean } = {}): TestContext {
  const dir = tempDir(t, 'pcl-provision-');
  return Object.assign(createProvisionContext({ baseDir: dir, dataDir: '.portcullis', hasHttpListener: opts.hasHttpListener ?? false }), { dir });
}

/** A raw site as the schema outputs it: a one-host, one-route site with `fields` replacing its own. Throws when the schema refuses it. */
export function rawSite(fields: object = {}): RawSite {
  const site = { hosts: ['api.test'], certificates: [{ cert: 'cert.pem', key: 'key.pem' }], routes: [{ path: '/', upstream: 'http://127.0.0.1:9000' }], ...fields };
  const parsed = configSchema.safeParse({ listen: { https: '127.0.0.1:8443' }, sites: [site] });
  if (!parsed.success) throw new Error(`the schema refuses the test's site: ${JSON.stringify(parsed.error.issues)}`);
  return parsed.data.sites[0]!;
}

/** A raw route as the schema outputs it. */
export function rawRoute(fields: object): RawRoute {
  return rawSite({ routes: [{ path: '/', upstream: 'http://127.0.0.1:9000', ...fields }] }).routes[0]!;
}
