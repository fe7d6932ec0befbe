import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PortcullisError } from '../../src/errors.js';
import { controlSocketFile } from '../../src/state/index.js';
import { sendControl } from '../../src/supervisor/index.js';
import { openControlSocket } from '../../src/supervisor/control-socket.js';
import type { DenyChange, KeyRevocation } from '../../src/supervisor/store-changes.js';

/** Writes `text` as is and reads the whole answer. */
function raw(path: string, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(path, () => socket.write(text));
    let answer = '';
    socket.on('data', (d: Buffer) => (answer += d.toString()));
    socket.on('end', () => resolve(answer));
    socket.on('error', reject);
  });
}

describe('the control socket', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pcl-control-'));
  let reloads = 0;
  let retries = 0;
  const changes: (DenyChange | KeyRevocation | null)[] = [];
  let server: { close(): Promise<void> };
  before(async () => {
    server = await openControlSocket(dir, {
      reload: async () => ({ ok: true, message: `reload ${++reloads}` }),
      denyList: (change) => {
        if (change === null) return Promise.reject(new PortcullisError('PCL_DENY_LIST_INVALID', 'broken list'));
        changes.push(change);
        return Promise.resolve({ ok: true, message: 'denied', unsaved: 1 });
      },
      apiKeys: async (change) => {
        changes.push(change);
        return { ok: true, message: 'keys' };
      },
      flush: async () => ({ ok: true, message: 'flushed' }),
      status: async () => ({ ok: true, message: 'status' }),
    }, async () => void retries++);
  });
  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('is a 0600 socket that answers each command with its handler', async () => {
    assert.equal(statSync(controlSocketFile(dir)).mode & 0o777, 0o600);
    assert.deepEqual(await sendControl(controlSocketFile(dir), { command: 'api-keys' }), { ok: true, message: 'keys' });
  });

  test('a request that is not a command object gets a usage answer, and the socket keeps serving', async () => {
    const path = controlSocketFile(dir);
    for (const request of ['null', '[]', '7', '"reload"', '{"command":"toString"}', '{"command":{}}', '{}']) {
      const answer = JSON.parse(await raw(path, `${request}\n`)) as { ok: boolean; code: string; message: string };
      assert.equal(answer.ok, false, request);
      assert.equal(answer.code, 'PCL_CLI_USAGE', request);
      assert.match(answer.message, /^unknown command; send \{"command": one of reload, deny-list, api-keys, flush, status\}$/, request);
    }
    assert.equal((JSON.parse(await raw(path, 'not json\n')) as { message: string }).message, 'not a JSON request');
    assert.equal((await sendControl(path, { command: 'reload' })).ok, true);
  });

  test('one request per connection: a second line is not carried out', async () => {
    const before = reloads;
    const answer = await raw(controlSocketFile(dir), '{"command":"reload"}\n{"command":"reload"}\n');
    assert.deepEqual(JSON.parse(answer), { ok: true, message: `reload ${before + 1}` });
    assert.equal(reloads, before + 1);
  });

  test('a handler that fails is answered with its code, not left hanging', async () => {
    assert.deepEqual(await sendControl(controlSocketFile(dir), { command: 'deny-list' }), { ok: false, code: 'PCL_DENY_LIST_INVALID', message: 'broken list' });
  });

  test('every request first retries saving the changes held in memory only', async () => {
    const before = retries;
    await sendControl(controlSocketFile(dir), { command: 'reload' });
    await sendControl(controlSocketFile(dir), { command: 'flush' });
    assert.equal(retries, before + 2);
  });

  test('hands a valid unsaved deny entry or key revocation to its handler, normalised', async () => {
    changes.length = 0;
    const path = controlSocketFile(dir);
    const fingerprint = `sha256:${'ab'.repeat(32)}`;
    assert.deepEqual(await sendControl(path, { command: 'deny-list', unpersisted: { deny: { fingerprint, note: 'stolen', addedAt: '2025-01-02T03:04:05.000Z' } } }), { ok: true, message: 'denied', unsaved: 1 });
    await sendControl(path, { command: 'deny-list', unpersisted: { deny: { serial: '0x0a1b', issuer: 'CN=Clients CA,O=Example', note: null, addedAt: '2025-01-02T03:04:05Z' } } });
    await sendControl(path, { command: 'api-keys', unpersisted: { revoke: { id: '0123456789ab', at: '2025-01-02T03:04:05Z' } } });
    await sendControl(path, { command: 'api-keys' });
    assert.deepEqual(changes, [
      { deny: { fingerprint: `sha256:${'AB:'.repeat(31)}AB`, note: 'stolen', addedAt: '2025-01-02T03:04:05.000Z' } },
      { deny: { serial: 'A1B', issuer: 'CN=Clients CA,O=Example', note: null, addedAt: '2025-01-02T03:04:05.000Z' } },
      { revoke: { id: '0123456789ab', at: '2025-01-02T03:04:05.000Z' } },
      null,
    ]);
  });

  test('refuses a malformed request with a usage answer naming the field, runs nothing, and keeps serving', async () => {
    changes.length = 0;
    const path = controlSocketFile(dir);
    const fingerprint = `sha256:${'ab'.repeat(32)}`;
    const deny = (entry: unknown) => JSON.stringify({ command: 'deny-list', unpersisted: { deny: entry } });
    const at = '2025-01-02T03:04:05Z';
    const table: [string, RegExp][] = [
      ['{"command":"reload","unpersisted":{}}', /^"unpersisted" is not a field of the reload request$/],
      ['{"command":"api-keys","extra":1}', /^"extra" is not a field of the api-keys request$/],
      ['{"command":"deny-list","unpersisted":null}', /^unpersisted must be \{"deny"/],
      ['{"command":"deny-list","unpersisted":{"deny":{},"remove":{}}}', /^unpersisted must be \{"deny"/],
      [deny({ fingerprint, note: null, addedAt: at, removed: true }), /^unpersisted\.deny\.removed is not a field of a deny entry/],
      [deny({ fingerprint: 'AB:CD', note: null, addedAt: at }), /^unpersisted\.deny: --fingerprint AB:CD is not a SHA-256 fingerprint/],
      [deny({ fingerprint: 7, note: null, addedAt: at }), /^unpersisted\.deny\.fingerprint must be a string$/],
      [deny({ serial: 'zz', issuer: 'CN=x', note: null, addedAt: at }), /is not a hexadecimal serial number/],
      [deny({ serial: '0A' , note: null, addedAt: at }), /give --fingerprint sha256:…, or --serial HEX with --issuer/],
      [deny({ fingerprint, note: 5, addedAt: at }), /^unpersisted\.deny\.note must be a string/],
      [deny({ fingerprint, note: 'x'.repeat(1025), addedAt: at }), /^unpersisted\.deny\.note must be a string \(at most 1024 characters\)/],
      [deny({ fingerprint, note: null, addedAt: 'yesterday' }), /^unpersisted\.deny\.addedAt must be an ISO time$/],
      [deny({ fingerprint, note: null }), /^unpersisted\.deny\.addedAt must be an ISO time$/],
      ['{"command":"api-keys","unpersisted":{"create":{"id":"0123456789ab"}}}', /^unpersisted must be \{"revoke"/],
      ['{"command":"api-keys","unpersisted":{"revoke":{"id":"0123456789ab","at":"2025-01-02T03:04:05Z","revokedAt":null}}}', /^unpersisted must be \{"revoke"/],
      ['{"command":"api-keys","unpersisted":{"revoke":{"id":"../../etc","at":"2025-01-02T03:04:05Z"}}}', /^unpersisted\.revoke\.id must be a key id \(12 hex digits\)$/],
      ['{"command":"api-keys","unpersisted":{"revoke":{"id":"0123456789ab","at":null}}}', /^unpersisted\.revoke\.at must be an ISO time$/],
    ];
    for (const [request, message] of table) {
      const answer = JSON.parse(await raw(path, `${request}\n`)) as { ok: boolean; code: string; message: string };
      assert.equal(answer.ok, false, request);
      assert.equal(answer.code, 'PCL_CLI_USAGE', request);
      assert.match(answer.message, message, request.slice(0, 200));
    }
    assert.deepEqual(changes, [], 'no handler ran');
    assert.equal((await sendControl(path, { command: 'reload' })).ok, true);
  });
});
