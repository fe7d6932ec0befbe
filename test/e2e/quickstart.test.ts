import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { test } from 'node:test';
import { curl } from '../helpers/clients.js';
import { startCli } from '../helpers/cli-process.js';
import { tempDir } from '../helpers/proxy.js';

test('the zero-config quickstart makes a local CA, serves builtin:whoami over TLS 1.3, and reuses the CA on the next start', async (t) => {
  const cwd = tempDir(t);
  const first = startCli(t, ['start', '--listen', '127.0.0.1:0'], cwd);
  const [, port] = await first.waitFor(/serving https:\/\/localhost:(\d+)\//);
  const [, caFile] = await first.waitFor(/curl --cacert (\S+) /);
  assert.equal(caFile, join(cwd, '.portcullis', 'ca', 'ca.pem'));
  assert.equal(statSync(join(cwd, '.portcullis', 'ca', 'ca.key')).mode & 0o777, 0o600);
  const caPem = readFileSync(caFile!, 'utf8');

  const r = await curl(['--cacert', caFile!, '--tlsv1.3', `https://localhost:${port}/hello?x=1`]);
  assert.equal(r.code, 0, r.stderr);
  const who = JSON.parse(r.stdout) as { tls: { version: string; sni: string; alpn: string }; request: { target: string }; headers: Record<string, string> };
  assert.equal(who.tls.version, 'TLSv1.3');
  assert.equal(who.tls.sni, 'localhost');
  assert.equal(who.request.target, '/hello?x=1');
  assert.equal(who.headers['x-forwarded-proto'], 'https');

  const byIp = await curl(['--cacert', caFile!, `https://127.0.0.1:${port}/`]);
  assert.equal(byIp.code, 0, `a client without SNI reaches the default site: ${byIp.stderr}`);

  first.child.kill('SIGTERM');
  await once(first.child, 'exit');
  const second = startCli(t, ['start', '--listen', '127.0.0.1:0'], cwd);
  const [, port2] = await second.waitFor(/serving https:\/\/localhost:(\d+)\//);
  assert.equal(readFileSync(caFile!, 'utf8'), caPem, 'the CA is reused, not remade');
  const again = await curl(['--cacert', caFile!, `https://localhost:${port2}/`]);
  assert.equal(again.code, 0, again.stderr);
});
