import type { Socket } from 'node:net';
import { parseClientHello, type ClientHello, type TlsAlert } from './client-hello.js';

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
export class HelloPeek {
  readonly #socket: Socket;
  readonly #report: (outcome: PeekOutcome) => void;
  readonly #chunks: Buffer[] = [];
  #received = 0;
  /** Bytes needed before parsing again can tell more (a whole record), so a hello sent byte by byte is parsed once per record. */
  #need = 1;
  readonly #timer: NodeJS.Timeout;
  #done = false;

  constructor(socket: Socket, timeoutMs: number, report: (outcome: PeekOutcome) => void) {
    this.#socket = socket;
    this.#report = report;
    this.#timer = setTimeout(this.#onTimeout, timeoutMs);
    socket.on('readable', this.#onReadable);
    socket.once('end', this.#onClosed);
    socket.once('close', this.#onClosed);
    socket.on('error', this.#onClosed);
  }

  readonly #onReadable = (): void => {
    let chunk: Buffer | null;
    while ((chunk = this.#socket.read() as Buffer | null) !== null) {
      this.#chunks.push(chunk);
      this.#received += chunk.length;
    }
    if (this.#done || this.#received < this.#need) return;
    const data = this.#chunks.length === 1 ? (this.#chunks[0] as Buffer) : Buffer.concat(this.#chunks);
    this.#chunks.length = 0;
    this.#chunks.push(data);
    const parsed = parseClientHello(data);
    if (parsed.kind === 'incomplete') {
      this.#need = parsed.need;
      return;
    }
    this.#finish();
    if (parsed.kind === 'hello') this.#socket.unshift(data);
    this.#report(parsed.kind === 'not_tls' ? { kind: 'not_tls', looksLikeHttp: parsed.looksLikeHttp, head: data } : parsed);
  };

  readonly #onTimeout = (): void => {
    if (this.#done) return;
    this.#finish();
    this.#report({ kind: 'timeout' });
  };

  readonly #onClosed = (): void => {
    if (this.#done) return;
    this.#finish();
    this.#report({ kind: 'closed' });
  };

  #finish(): void {
    this.#done = true;
    clearTimeout(this.#timer);
    this.#socket.off('readable', this.#onReadable);
    this.#socket.off('end', this.#onClosed);
    this.#socket.off('close', this.#onClosed);
    this.#socket.off('error', this.#onClosed);
  }
}
