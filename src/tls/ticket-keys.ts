import { randomBytes, randomFillSync } from 'node:crypto';
import { createSecureContext, type SecureContext, type Server } from 'node:tls';

/**
 * Session-ticket keys, rotated in memory, with the previous key kept for
 * decryption so that a rotation does not cost every client a full handshake.
 *
 * Node's public API (`server.setTicketKeys`) holds a single key. To keep the
 * previous one we use the ticket-key callback of Node's native SecureContext
 * (`enableTicketKeyCallback` + `onticketkeycallback`), present since Node 0.x
 * and exercised by Node's own tests, on each server's base context (every
 * site has its own server, so no SNI context switch is involved).
 * Where the hook is missing, we fall back to `setTicketKeys` with the current
 * key only (`keepsPrevious` is false then).
 *
 * `setSecureContext()` replaces the base context and its keys: call
 * `installOnServer` again after every swap.
 */

interface TicketKey {
  readonly name: Buffer;
  readonly hmac: Buffer;
  readonly aes: Buffer;
}

/** The shape of Node's internal native SecureContext that we rely on. */
interface NativeContext {
  enableTicketKeyCallback?: () => void;
  onticketkeycallback?: (name: Buffer, iv: Buffer, encrypt: boolean) => unknown[];
}

// Return codes of OpenSSL's ticket key callback.
const ticketUnknown = 0;
const ticketOk = 1;
const ticketOkRenew = 2;
const zeroKey = Buffer.alloc(16);

/**
 * Ticket IVs, drawn from one random block refilled when used up: a full TLS 1.3
 * handshake issues two tickets, and a call into OpenSSL's RNG for each 16 bytes
 * costs more than the copy. OpenSSL copies the IV in the callback, so handing
 * out a view of the block is safe.
 */
const ivBlock = Buffer.alloc(16 * 256);
let ivOffset = ivBlock.length;
function nextIv(): Buffer {
  if (ivOffset === ivBlock.length) {
    randomFillSync(ivBlock);
    ivOffset = 0;
  }
  ivOffset += 16;
  return ivBlock.subarray(ivOffset - 16, ivOffset);
}

function newKey(): TicketKey {
  const bytes = randomBytes(48);
  return { name: bytes.subarray(0, 16), hmac: bytes.subarray(16, 32), aes: bytes.subarray(32, 48) };
}

function nativeOf(context: SecureContext): NativeContext {
  return (context as unknown as { context: NativeContext }).context;
}

/** Decided once: whether this Node exposes the native ticket-key hook. */
const hookAvailable = typeof nativeOf(createSecureContext({})).enableTicketKeyCallback === 'function';

export class TicketKeyRing {
  #current: TicketKey = newKey();
  #previous: TicketKey | null = null;
  #timer: NodeJS.Timeout | null = null;
  readonly #servers = new Set<Server>();
  readonly #callback = (name: Buffer, iv: Buffer, encrypt: boolean): unknown[] => this.#onTicket(name, iv, encrypt);

  /** False when this Node lacks the native hook and only the current key decrypts. */
  readonly keepsPrevious = hookAvailable;

  /** Rotates every `rotationMs` (unref'd timer). Safe to call once; `stop` ends it. */
  start(rotationMs: number): void {
    this.stop();
    this.#timer = setInterval(() => this.rotate(), rotationMs).unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** A new current key; the old current key stays valid for decryption until the next rotation. */
  rotate(): void {
    this.#previous = this.#current;
    this.#current = newKey();
    this.#applied();
  }

  /** Called after every rotation, e.g. to hand the keys to worker processes. */
  onRotate: (() => void) | null = null;

  /** The current and previous keys as one buffer, for another process's `import` (never logged, never written to disk). */
  export(): Buffer {
    const previous = this.#previous ?? this.#current;
    return Buffer.concat([this.#current.name, this.#current.hmac, this.#current.aes, previous.name, previous.hmac, previous.aes]);
  }

  /** Takes over keys from `export`: workers use their primary's keys, so a session resumes on any worker. */
  import(keys: Buffer): void {
    if (keys.length !== 96) throw new RangeError('ticket keys must be 96 bytes (current and previous)');
    const copy = Buffer.from(keys);
    this.#current = { name: copy.subarray(0, 16), hmac: copy.subarray(16, 32), aes: copy.subarray(32, 48) };
    this.#previous = { name: copy.subarray(48, 64), hmac: copy.subarray(64, 80), aes: copy.subarray(80, 96) };
    this.#applied();
  }

  #applied(): void {
    if (!this.keepsPrevious) for (const server of this.#servers) server.setTicketKeys(this.#packed());
    this.onRotate?.();
  }

  /** Hooks the server's base context. Call after creating the server and after every `setSecureContext`. */
  installOnServer(server: Server): void {
    this.#servers.add(server);
    const base = (server as unknown as { _sharedCreds?: SecureContext })._sharedCreds;
    if (!this.keepsPrevious || !base) {
      server.setTicketKeys(this.#packed());
      return;
    }
    const native = nativeOf(base);
    native.enableTicketKeyCallback?.();
    native.onticketkeycallback = this.#callback;
  }

  /** Stops updating a server that was retired. */
  forgetServer(server: Server): void {
    this.#servers.delete(server);
  }

  #packed(): Buffer {
    return Buffer.concat([this.#current.name, this.#current.hmac, this.#current.aes]);
  }

  #onTicket(name: Buffer, _iv: Buffer, encrypt: boolean): unknown[] {
    const current = this.#current;
    if (encrypt) return [ticketOk, current.hmac, current.aes, current.name, nextIv()];
    // Accepted, and OpenSSL issues a fresh ticket: a client that reuses one ticket makes its
    // connections linkable (RFC 8446 §C.4), and under TLS 1.3 OpenSSL issues none after a
    // resumption unless asked to. A ticket of the previous key is renewed under the current one.
    if (name.equals(current.name)) return [ticketOkRenew, current.hmac, current.aes];
    const previous = this.#previous;
    if (previous && name.equals(previous.name)) return [ticketOkRenew, previous.hmac, previous.aes];
    return [ticketUnknown, zeroKey, zeroKey];
  }
}
