import type { Socket } from 'node:net';

/**
 * Reads the first bytes of a freshly accepted (paused) socket until the
 * subclass can tell what they are — a ClientHello, a PROXY header — then
 * stops reading; the subclass puts back with `unshift` what the layer that
 * takes the socket over must read from the start. Bytes are examined again
 * only once `need` of them arrived, so input sent byte by byte is parsed once
 * per unit (record, header). Reports exactly once, at the latest after
 * `timeoutMs`.
 */
export abstract class FirstBytesReader<R> {
  protected readonly socket: Socket;
  readonly #report: (outcome: R) => void;
  readonly #chunks: Buffer[] = [];
  #received = 0;
  /** Bytes needed before examining again can tell more. */
  protected need = 1;
  readonly #timer: NodeJS.Timeout;
  #done = false;

  constructor(socket: Socket, timeoutMs: number, report: (outcome: R) => void) {
    this.socket = socket;
    this.#report = report;
    this.#timer = setTimeout(this.#onTimeout, timeoutMs);
    socket.on('readable', this.#onReadable);
    socket.once('end', this.#onClosed);
    socket.once('close', this.#onClosed);
    socket.on('error', this.#onClosed);
  }

  /** Every byte read so far (at least `need`): ends with `end`/`finish`, or raises `need`. */
  protected abstract examine(data: Buffer): void;
  /** No decision within the time allowed. */
  protected abstract timedOut(): void;
  /** The peer closed (or the socket failed) before a decision. */
  protected abstract closed(): void;

  /** How many bytes were read so far. */
  protected get received(): number {
    return this.#received;
  }

  /** Every byte read so far, as one buffer. */
  protected buffered(): Buffer {
    return this.#chunks.length === 1 ? (this.#chunks[0] as Buffer) : Buffer.concat(this.#chunks);
  }

  /** Stops reading and reports. */
  protected end(outcome: R): void {
    this.finish();
    this.#report(outcome);
  }

  /** Stops reading, for a subclass that puts bytes back before it reports. */
  protected finish(): void {
    this.#done = true;
    clearTimeout(this.#timer);
    this.socket.off('readable', this.#onReadable);
    this.socket.off('end', this.#onClosed);
    this.socket.off('close', this.#onClosed);
    this.socket.off('error', this.#onClosed);
  }

  /** Reports without stopping what `finish` already stopped: after `unshift`. */
  protected report(outcome: R): void {
    this.#report(outcome);
  }

  readonly #onReadable = (): void => {
    let chunk: Buffer | null;
    while ((chunk = this.socket.read() as Buffer | null) !== null) {
      this.#chunks.push(chunk);
      this.#received += chunk.length;
    }
    if (this.#done || this.#received < this.need) return;
    const data = this.buffered();
    this.#chunks.length = 0;
    this.#chunks.push(data);
    this.examine(data);
  };

  readonly #onTimeout = (): void => {
    if (!this.#done) this.timedOut();
  };

  readonly #onClosed = (): void => {
    if (!this.#done) this.closed();
  };
}
