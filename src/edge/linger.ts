import type { Duplex } from 'node:stream';

/** How long a client may take to hang up after a final answer. */
const lingerMs = 2_000;

/**
 * Sends a last answer and closes gracefully, so the answer arrives (closing
 * with unread input would send a reset instead); discards whatever the client
 * still sends and destroys the socket if it has not hung up within a bound.
 */
export function endWithLinger(socket: Duplex, answer: Buffer | string): void {
  socket.end(answer);
  socket.resume();
  (socket as Duplex & { setTimeout(ms: number, cb: () => void): void }).setTimeout(lingerMs, () => socket.destroy());
}
