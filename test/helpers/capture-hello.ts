import { spawn } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { parseClientHello } from '../../src/edge/client-hello.js';

/** Captures the first flight a real client sends: a raw TCP server that records bytes and hangs up. */
export async function captureHello(args: string[]): Promise<Buffer> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const captured = new Promise<Buffer>((resolve) => {
    server.once('connection', (socket) => {
      const chunks: Buffer[] = [];
      socket.on('data', (d: Buffer) => {
        chunks.push(d);
        const all = Buffer.concat(chunks);
        if (parseClientHello(all).kind !== 'incomplete') {
          socket.destroy();
          resolve(all);
        }
      });
    });
  });
  const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, ...args], { stdio: ['pipe', 'ignore', 'ignore'] });
  const bytes = await captured;
  child.kill();
  server.close();
  return bytes;
}

