import { parseClientHello, type ClientHello, type TlsAlert } from './client-hello.js';
import { FirstBytesReader } from './first-bytes.js';

export type PeekOutcome =
  | { readonly kind: 'hello'; readonly hello: ClientHello }
  /** `head`: the bytes read, which told that they are no TLS handshake. */
  | { readonly kind: 'not_tls'; readonly looksLikeHttp: boolean; readonly head: Buffer }
  | { readonly kind: 'malformed'; readonly why: string; readonly alert: TlsAlert | null }
  | { readonly kind: 'too_large' }
  | { readonly kind: 'timeout' }
  | { readonly kind: 'closed' };

/**
 * Reads a freshly accepted (paused) socket until its ClientHello is complete,
 * then puts every byte back with `unshift`, so the TLS layer that takes the
 * socket over reads the handshake from the start (Node feeds a wrapped
 * socket's buffered bytes to TLS first). Reports exactly once.
 */
export class HelloPeek extends FirstBytesReader<PeekOutcome> {
  protected examine(data: Buffer): void {
    const parsed = parseClientHello(data);
    if (parsed.kind === 'incomplete') {
      this.need = parsed.need;
      return;
    }
    this.finish();
    if (parsed.kind === 'hello') this.socket.unshift(data);
    this.report(parsed.kind === 'not_tls' ? { kind: 'not_tls', looksLikeHttp: parsed.looksLikeHttp, head: data } : parsed);
  }

  protected timedOut(): void {
    this.end({ kind: 'timeout' });
  }

  protected closed(): void {
    this.end({ kind: 'closed' });
  }
}
