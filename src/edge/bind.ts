import type { AddressInfo, Server } from 'node:net';
import { formatHostPort, type ListenAddress } from '../config/index.js';
import { PortcullisError } from '../errors.js';

const fixes: Record<string, string> = {
  EADDRINUSE: 'stop the other process on that port or choose another port',
  EACCES: 'ports below 1024 need privileges; choose a port ≥ 1024 or grant CAP_NET_BIND_SERVICE',
  EADDRNOTAVAIL: 'use an address of this machine, or 0.0.0.0 for all of them',
};

/** Binds a server; rejects with PCL_LISTEN_FAILED naming the config key, the address and the fix. */
export function bindServer(server: Server, address: ListenAddress, key: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      const where = formatHostPort(address.host, address.port);
      const fix = fixes[err.code ?? ''] ?? 'check the address';
      reject(new PortcullisError('PCL_LISTEN_FAILED', `${key}: cannot listen on ${where}: ${err.code ?? err.message}; ${fix}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen(address.port, address.host, () => {
      server.off('error', onError);
      resolve(server.address() as AddressInfo);
    });
  });
}
