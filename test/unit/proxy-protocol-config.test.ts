import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { configJsonSchema, loadConfigFile, type Config } from '../../src/config/index.js';
import { ConfigError } from '../../src/errors.js';
import { TestPki } from '../helpers/pki.js';
import { tempDir } from '../helpers/proxy.js';

const pki = new TestPki();
after(() => pki.cleanup());
const root = pki.root('pp-config-root');
const leaf = pki.leaf('pp-config', root, { dns: ['api.test'] });

/** Loads a config whose `listen` block is `listen`; returns the config or the ConfigError's issues. */
function load(t: { after(fn: () => unknown): void }, listen: string): Config | { path: string; message: string }[] {
  const file = join(tempDir(t), 'portcullis.yaml');
  writeFileSync(
    file,
    `listen: ${listen}
sites:
  - hosts: [api.test]
    certificates: [{ cert: ${leaf.chainFile}, key: ${leaf.keyFile} }]
    routes: [{ path: /, upstream: "http://127.0.0.1:9000" }]
`,
  );
  try {
    return loadConfigFile(file);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return [...err.issues];
  }
}

test('listen.proxyProtocol: absent or empty is off (null), a list of addresses and CIDRs becomes the balancers, IPv4-mapped peers included', (t) => {
  for (const listen of ['{ https: "127.0.0.1:8443" }', '{ https: "127.0.0.1:8443", proxyProtocol: [] }']) {
    const config = load(t, listen) as Config;
    assert.equal(config.listen.proxyProtocol, null, listen);
  }
  const config = load(t, '{ https: "127.0.0.1:8443", proxyProtocol: ["10.0.0.0/8", "127.0.0.1", "fd00::/8"] }') as Config;
  const balancers = config.listen.proxyProtocol;
  assert.ok(balancers);
  assert.equal(balancers.check('10.20.30.40', 'ipv4'), true);
  assert.equal(balancers.check('127.0.0.1', 'ipv4'), true);
  assert.equal(balancers.check('127.0.0.2', 'ipv4'), false);
  assert.equal(balancers.check('fd12::1', 'ipv6'), true);
  assert.equal(balancers.check('::ffff:10.0.0.1', 'ipv6'), true);
});

const refused: [string, string, string, RegExp][] = [
  ['a host name', '["lb.example.test"]', 'listen.proxyProtocol[0]', /use an IP address or CIDR, e.g. "10.0.0.0\/8"/],
  ['too many prefix bits', '["127.0.0.1", "10.0.0.0/33"]', 'listen.proxyProtocol[1]', /use an IP address or CIDR/],
  ['a string for a list', '"10.0.0.0/8"', 'listen.proxyProtocol', /list the addresses or CIDRs of the load balancers that send a PROXY header/],
  ['everyone (IPv4)', '["10.0.0.1", "0.0.0.0/0"]', 'listen.proxyProtocol', /a \/0 believes a PROXY header from anyone.*list only the addresses of your load balancers/],
  ['everyone (IPv6)', '["::/0"]', 'listen.proxyProtocol', /a \/0 believes a PROXY header from anyone/],
];
for (const [what, value, path, message] of refused) {
  test(`listen.proxyProtocol refuses ${what}, naming the key and the fix`, (t) => {
    const issues = load(t, `{ https: "127.0.0.1:8443", proxyProtocol: ${value} }`) as { path: string; message: string }[];
    assert.ok(Array.isArray(issues), 'refused');
    const issue = issues.find((i) => i.path === path);
    assert.ok(issue, `an issue at ${path}: ${JSON.stringify(issues)}`);
    assert.match(issue.message, message);
  });
}

test('portcullis schema describes listen.proxyProtocol for editors', () => {
  const schema = configJsonSchema() as { properties: { listen: { properties: Record<string, { type?: string; items?: { type?: string } }> } } };
  const key = schema.properties.listen.properties.proxyProtocol;
  assert.equal(key?.type, 'array');
  assert.equal(key.items?.type, 'string');
});
