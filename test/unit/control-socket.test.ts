import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PortcullisError } from '../../src/errors.js';
import { controlSocketPath, sendControl } from '../../src/supervisor/index.js';
import { openControlSocket } from '../../src/supervisor/control-socket.js';

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
  let server: { close(): Promise<void> };
  before(async () => {
    server = await openControlSocket(dir, {
      reload: async () => ({ ok: true, message: `reload ${++reloads}` }),
      denyList: () => Promise.reject(new PortcullisError('PCL_DENY_LIST_INVALID', 'broken list')),
      apiKeys: async () => ({ ok: true, message: 'keys' }),
      flush: async () => ({ ok: true, message: 'flushed' }),
    });
  });
  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('is a 0600 socket that answers each command with its handler', async () => {
    assert.equal(statSync(controlSocketPath(dir)).mode & 0o777, 0o600);
    assert.deepEqual(await sendControl(controlSocketPath(dir), { command: 'api-keys' }), { ok: true, message: 'keys' });
  });

  test('a request that is not a command object gets a usage answer, and the socket keeps serving', async () => {
    const path = controlSocketPath(dir);
    for (const request of ['null', '[]', '7', '"reload"', '{"command":"toString"}', '{"command":{}}', '{}']) {
      const answer = JSON.parse(await raw(path, `${request}\n`)) as { ok: boolean; code: string; message: string };
      assert.equal(answer.ok, false, request);
      assert.equal(answer.code, 'PCL_CLI_USAGE', request);
      assert.match(answer.message, /^unknown command; send \{"command": one of reload, deny-list, api-keys, flush\}$/, request);
    }
    assert.equal((JSON.parse(await raw(path, 'not json\n')) as { message: string }).message, 'not a JSON request');
    assert.equal((await sendControl(path, { command: 'reload' })).ok, true);
  });

  test('one request per connection: a second line is not carried out', async () => {
    const before = reloads;
    const answer = await raw(controlSocketPath(dir), '{"command":"reload"}\n{"command":"reload"}\n');
    assert.deepEqual(JSON.parse(answer), { ok: true, message: `reload ${before + 1}` });
    assert.equal(reloads, before + 1);
  });

  test('a handler that fails is answered with its code, not left hanging', async () => {
    assert.deepEqual(await sendControl(controlSocketPath(dir), { command: 'deny-list' }), { ok: false, code: 'PCL_DENY_LIST_INVALID', message: 'broken list' });
  });
});
