import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Server as TlsServer } from 'node:tls';
import { formatHostPort, type ListenAddress } from '../config/index.js';
import { PortcullisError } from '../errors.js';

/**
 * The TCP front of the HTTPS port. It owns accepting, so that checks that need
 * no TLS (block lists, first-byte inspection) can run before any TLS work, and
 * hands each accepted socket to the TLS server.
 */
export class HttpsListener {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();

  constructor(tlsServer: TlsServer) {
    this.#server = createServer({ noDelay: true }, (socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
      tlsServer.emit('connection', socket);
    });
  }

  /** Binds the address; rejects with PCL_LISTEN_FAILED naming the key, the address and the fix. */
  listen(address: ListenAddress, key: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        const where = formatHostPort(address.host, address.port);
        const fix =
          err.code === 'EADDRINUSE'
            ? 'stop the other process on that port or choose another port'
            : err.code === 'EACCES'
              ? 'ports below 1024 need privileges; choose a port ≥ 1024 or grant CAP_NET_BIND_SERVICE'
              : err.code === 'EADDRNOTAVAIL'
                ? 'use an address of this machine, or 0.0.0.0 for all of them'
                : 'check the address';
        reject(new PortcullisError('PCL_LISTEN_FAILED', `${key}: cannot listen on ${where}: ${err.code ?? err.message}; ${fix}`, { cause: err }));
      };
      this.#server.once('error', onError);
      this.#server.listen(address.port, address.host, () => {
        this.#server.off('error', onError);
        resolve(this.#server.address() as AddressInfo);
      });
    });
  }

  /** Stops accepting and destroys every open connection. */
  close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const socket of this.#sockets) socket.destroy();
    return closed;
  }
}
