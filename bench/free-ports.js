// Prints N distinct free TCP ports on 127.0.0.1, one per line (default 1).
// All N listeners are open at the same time, so the ports differ; they are
// closed before printing, so another process could take one in between: the
// caller fails loudly on EADDRINUSE rather than measuring the wrong server.
import { createServer } from 'node:net';

const count = Number(process.argv[2] ?? '1');
if (!Number.isInteger(count) || count < 1 || count > 64) {
  console.error('usage: node bench/free-ports.js [COUNT 1..64]');
  process.exit(2);
}

function listenOnAnyPort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

const servers = await Promise.all(Array.from({ length: count }, listenOnAnyPort));
const ports = servers.map((s) => s.address().port);
await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
console.log(ports.join('\n'));
