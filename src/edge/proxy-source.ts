import { isIPv6, type BlockList, type Socket } from 'node:net';
import { FirstBytesReader } from './first-bytes.js';
import { parseProxyHeader, proxySignatureOf, type ProxySource } from './proxy-header.js';

/**
 * Reading and believing PROXY headers on accepted sockets. Only a peer listed
 * in `listen.proxyProtocol` is believed: its connections must start with a
 * header, and the client the header names becomes the connection's address.
 * Anyone else who sends one is refused, never believed.
 */

export type ProxyRefusal = 'proxy_protocol_missing' | 'proxy_protocol_malformed' | 'proxy_protocol_untrusted';

export type HeaderRead =
  /** A balancer's header: `source` is the client, or null (v2 LOCAL, v1 UNKNOWN …) when the connection keeps the balancer's own address. */
  | { readonly kind: 'header'; readonly source: ProxySource | null }
  /** Another peer's bytes that are no PROXY header: served as a direct client. */
  | { readonly kind: 'none' }
  | { readonly kind: 'refused'; readonly reason: ProxyRefusal; readonly why: string }
  /** Closed before sending a byte (a balancer's TCP health check): nothing to report. */
  | { readonly kind: 'closed' };

/** Whether `address` (a socket's own peer) is a balancer of `listen.proxyProtocol`; IPv4-mapped IPv6 peers match IPv4 entries. */
export function fromBalancer(balancers: BlockList, address: string): boolean {
  return balancers.check(address, isIPv6(address) ? 'ipv6' : 'ipv4');
}

/**
 * Reads the first bytes of an accepted socket, then puts back with `unshift`
 * every byte after the header, so that the TLS or HTTP layer that takes the
 * socket over reads from the client's first byte. From a balancer
 * (`trusted`) it waits for a whole header (bounded: 107 bytes for v1, 528
 * for v2); from anyone else only until the bytes cannot be a PROXY
 * signature, which a TLS or HTTP client shows in its first byte. Reports
 * exactly once, at the latest after `timeoutMs`.
 */
export class ProxyHeaderRead extends FirstBytesReader<HeaderRead> {
  readonly #trusted: boolean;
  readonly #timeoutMs: number;

  constructor(socket: Socket, trusted: boolean, timeoutMs: number, report: (read: HeaderRead) => void) {
    super(socket, timeoutMs, report);
    this.#trusted = trusted;
    this.#timeoutMs = timeoutMs;
  }

  protected examine(data: Buffer): void {
    if (this.#trusted) this.#parse(data);
    else this.#screen(data);
  }

  #parse(data: Buffer): void {
    const parsed = parseProxyHeader(data);
    switch (parsed.kind) {
      case 'incomplete':
        this.need = parsed.need;
        return;
      case 'none':
        return this.end({ kind: 'refused', reason: 'proxy_protocol_missing', why: 'the connection did not start with a PROXY header, and listen.proxyProtocol lists its source' });
      case 'malformed':
        return this.end({ kind: 'refused', reason: 'proxy_protocol_malformed', why: parsed.why });
      case 'header':
        this.finish();
        if (data.length > parsed.length) this.socket.unshift(data.subarray(parsed.length));
        this.report({ kind: 'header', source: parsed.source });
    }
  }

  #screen(data: Buffer): void {
    const signature = proxySignatureOf(data);
    if (signature === null) {
      this.need = data.length + 1;
      return;
    }
    if (signature !== 'none') return this.end({ kind: 'refused', reason: 'proxy_protocol_untrusted', why: `a PROXY ${signature} header from a source outside listen.proxyProtocol` });
    this.finish();
    this.socket.unshift(data);
    this.report({ kind: 'none' });
  }

  protected timedOut(): void {
    const received = this.received;
    if (!this.#trusted) {
      // still a prefix of a signature after all this time: whatever it is, the HTTP or TLS layer judges it as it would today
      this.finish();
      if (received > 0) this.socket.unshift(this.buffered());
      this.report({ kind: 'none' });
      return;
    }
    this.end(
      received === 0
        ? { kind: 'refused', reason: 'proxy_protocol_missing', why: `no PROXY header within ${this.#timeoutMs} ms` }
        : { kind: 'refused', reason: 'proxy_protocol_malformed', why: `PROXY header incomplete after ${this.#timeoutMs} ms: ${received} bytes` },
    );
  }

  protected closed(): void {
    const received = this.received;
    if (received === 0 || !this.#trusted) return this.end({ kind: 'closed' });
    this.end({ kind: 'refused', reason: 'proxy_protocol_malformed', why: `connection closed after ${received} bytes of a PROXY header` });
  }
}

/** Marks a socket handle whose peer is the client of a PROXY header. */
const kRelayed = Symbol('portcullis.relayedSource');

interface PeerHandle {
  getpeername?: (out: { address?: string; port?: number; family?: string }) => number;
  [kRelayed]?: ProxySource;
}

/** One function for every relayed handle (`this` is the handle), so that believing a header costs no closure. */
function relayedPeername(this: PeerHandle, out: { address?: string; port?: number; family?: string }): number {
  const source = this[kRelayed] as ProxySource;
  out.address = source.address;
  out.port = source.port;
  out.family = source.family;
  return 0;
}

/**
 * Makes the client of a balancer's PROXY header the socket's peer, for every
 * reader: this socket's `remoteAddress`, `remotePort` and `remoteFamily` (own
 * properties over the prototype's getters, which would answer from a cache
 * filled at accept), and the peer name its handle reports. The second is what
 * carries the client further: a `TLSSocket` that `tls.Server` makes over this
 * socket (`emit('connection')`) asks this same handle for its peer (Node's
 * TLS wrap forwards `getpeername` to the handle under it), and so do the
 * HTTP/1.1 and HTTP/2 layers above it, which read that TLS socket. Both are
 * Node internals that `test/unit/proxy-source.test.ts` checks on every
 * runtime we support. Returns false when the socket has no handle any more
 * (closed meanwhile): then it must not be served.
 */
export function adoptSource(socket: Socket, source: ProxySource): boolean {
  const handle = (socket as Socket & { _handle?: PeerHandle | null })._handle;
  if (!handle || typeof handle.getpeername !== 'function') return false;
  handle[kRelayed] = source;
  handle.getpeername = relayedPeername;
  Object.defineProperties(socket, {
    remoteAddress: { value: source.address, enumerable: true },
    remotePort: { value: source.port, enumerable: true },
    remoteFamily: { value: source.family, enumerable: true },
  });
  return true;
}
