import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { connect, createServer, type SecureVersion } from 'node:tls';
import { TicketKeyRing } from '../../src/tls/ticket-keys.js';
import { TestPki } from '../helpers/pki.js';

const pki = new TestPki();
after(() => pki.cleanup());
const root = pki.root('tickets-root');
const leaf = pki.leaf('tickets', root, { dns: ['tickets.test'] });

/** One handshake; resolves with the ticket the server sent and whether the offered session resumed. */
function handshake(port: number, version: SecureVersion, session?: Buffer): Promise<{ session: Buffer; reused: boolean }> {
  return new Promise((resolve, reject) => {
    let got: Buffer | undefined;
    let reused = false;
    const socket = connect({ port, host: '127.0.0.1', servername: 'tickets.test', ca: readFileSync(root.certFile), minVersion: version, maxVersion: version, session });
    socket.on('session', (s: Buffer) => {
      got = s;
    });
    socket.on('secureConnect', () => {
      reused = socket.isSessionReused();
      socket.write('x');
    });
    socket.on('data', () => socket.end());
    // a TLS 1.2 resumption under the current key sends no new ticket: keep the offered one
    socket.on('close', () => {
      const kept = got ?? session;
      if (kept) resolve({ session: kept, reused });
      else reject(new Error('no session ticket received'));
    });
    socket.on('error', reject);
  });
}

for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
  test(`keeps the previous ticket key for decryption across one rotation, not two (${version})`, async (t) => {
    const ring = new TicketKeyRing();
    assert.ok(ring.keepsPrevious, 'this Node exposes the ticket-key hook');
    const server = createServer({ cert: readFileSync(leaf.chainFile), key: readFileSync(leaf.keyFile) }, (s) => s.on('data', () => s.end('y')));
    ring.installOnServer(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => server.close());
    const port = (server.address() as AddressInfo).port;

    const first = await handshake(port, version);
    assert.equal(first.reused, false);
    ring.rotate();
    const afterOne = await handshake(port, version, first.session);
    assert.equal(afterOne.reused, true, 'a ticket of the previous key still resumes');
    ring.rotate();
    ring.rotate();
    const afterTwo = await handshake(port, version, first.session);
    assert.equal(afterTwo.reused, false, 'a ticket two keys old does not');
  });
}
