import { constants as h2constants } from 'node:http2';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect, type TLSSocket } from 'node:tls';

/**
 * An HTTP/2 client that writes frames byte by byte (RFC 9113 §4), for tests
 * that must send what a well-behaved client library never would: malformed
 * frames, floods, resets. It verifies the server like any test client.
 */

export const frameType = { data: 0, headers: 1, priority: 2, rstStream: 3, settings: 4, ping: 6, goaway: 7, windowUpdate: 8, continuation: 9 } as const;
export const flag = { endStream: 0x1, ack: 0x1, endHeaders: 0x4 } as const;

export interface Frame {
  readonly type: number;
  readonly flags: number;
  readonly stream: number;
  readonly payload: Buffer;
}

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(stream, 5);
  return Buffer.concat([header, payload]);
}

/** An HPACK block for a request without Huffman coding or the dynamic table: indexed :method/:scheme, literal :path and :authority. */
export function requestBlock(authority: string, path = '/', method: 'GET' | 'POST' = 'GET', extra: readonly (readonly [string, string])[] = []): Buffer {
  const literal = (nameIndex: number, value: string) => {
    const v = Buffer.from(value);
    // literal without indexing, indexed name (4-bit prefix), then a length with a 7-bit prefix
    return Buffer.concat([hpackInt(nameIndex, 4, 0x00), hpackInt(v.length, 7, 0x00), v]);
  };
  return Buffer.concat([Buffer.from([method === 'GET' ? 0x82 : 0x83, 0x87]), literal(4, path), literal(1, authority), ...extra.map(([n, v]) => hpack.literal(n, v))]);
}

/**
 * HPACK representations a request encoder never needs, for hostile header
 * blocks (RFC 7541): dynamic-table bombs and table size updates.
 */
export const hpack = {
  /** §6.2.2: literal without indexing, new name (what requestBlock sends for its extra fields). */
  literal: (name: string, value: string): Buffer => Buffer.concat([Buffer.from([0x00]), hpackString(name), hpackString(value)]),
  /** §6.1: a reference to a static (1–61) or dynamic (62 = newest entry) table entry; one byte up to index 126. */
  indexed: (index: number): Buffer => hpackInt(index, 7, 0x80),
  /** §6.2.1: literal with incremental indexing, new name: decoded, and added to the dynamic table as entry 62 (name + value + 32 bytes of the table's 4,096). */
  literalWithIndexing: (name: string, value: string): Buffer => Buffer.concat([Buffer.from([0x40]), hpackString(name), hpackString(value)]),
  /** §6.3: dynamic table size update, valid only at the start of a block and up to the decoder's SETTINGS_HEADER_TABLE_SIZE (4,096 by default). */
  tableSizeUpdate: (size: number): Buffer => hpackInt(size, 5, 0x20),
};

/** A WINDOW_UPDATE frame (RFC 9113 §6.9): `increment` bytes more for the stream, or for the connection on stream 0. */
export function windowUpdate(stream: number, increment: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(increment);
  return frame(frameType.windowUpdate, 0, stream, payload);
}

/** What a client sends first (RFC 9113 §3.4): the connection preface, then its SETTINGS frame (empty: the defaults). */
export const clientPreface: Buffer = Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(frameType.settings, 0, 0)]);

/** Acknowledges the server's SETTINGS (RFC 9113 §6.5.3): only then do its advertised limits bind the server's own HTTP/2 stack. */
export const settingsAck: Buffer = frame(frameType.settings, flag.ack, 0);

/** RFC 7541 §5.2 string literal, without Huffman coding. */
function hpackString(value: string): Buffer {
  const v = Buffer.from(value);
  return Buffer.concat([hpackInt(v.length, 7, 0x00), v]);
}

/** RFC 7541 §5.1 integer with an N-bit prefix. */
function hpackInt(value: number, prefixBits: number, firstByte: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([firstByte | value]);
  const bytes = [firstByte | max];
  let rest = value - max;
  while (rest >= 128) {
    bytes.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  bytes.push(rest);
  return Buffer.from(bytes);
}

export interface RawH2 {
  readonly socket: TLSSocket;
  /** Frames received so far, in order. */
  readonly frames: Frame[];
  write(data: Buffer): boolean;
  /** Resolves with the first frame (received or to come) that `match` accepts; rejects when the connection closes first or after `timeoutMs`. */
  frameWhere(match: (f: Frame) => boolean, timeoutMs?: number): Promise<Frame>;
  /** Resolves once the server has closed the TCP connection; rejects after `timeoutMs`. */
  closedByServer(timeoutMs?: number): Promise<void>;
  destroy(): void;
}

/** Connects with ALPN h2, sends the preface and an empty SETTINGS frame, and reads every frame the server sends. */
export async function rawH2(t: { after(fn: () => unknown): void }, port: number, servername: string, caFile: string): Promise<RawH2> {
  const socket = connect({ port, host: '127.0.0.1', servername, ca: readFileSync(caFile), ALPNProtocols: ['h2'] });
  socket.on('error', () => {});
  t.after(() => socket.destroy());
  await once(socket, 'secureConnect');
  if (socket.alpnProtocol !== 'h2') throw new Error(`the server chose ALPN ${String(socket.alpnProtocol)}, not h2`);
  const frames: Frame[] = [];
  const waiters = new Set<() => void>();
  let buffered = Buffer.alloc(0);
  let closed = false;
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 9) {
      const length = buffered.readUIntBE(0, 3);
      if (buffered.length < 9 + length) break;
      frames.push({ type: buffered[3] as number, flags: buffered[4] as number, stream: buffered.readUInt32BE(5) & 0x7fffffff, payload: buffered.subarray(9, 9 + length) });
      buffered = buffered.subarray(9 + length);
    }
    for (const w of waiters) w();
  });
  socket.once('close', () => {
    closed = true;
    for (const w of waiters) w();
  });
  socket.write(clientPreface);
  /** `check` answers a value when done, an Error when it never will be, undefined to keep waiting. */
  const wait = <T>(check: () => T | Error | undefined, timeoutMs: number): Promise<T> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => finish(new Error(`nothing within ${timeoutMs} ms (${frames.length} frames received, ${closed ? 'closed' : 'open'})`)), timeoutMs);
      const finish = (outcome: T | Error) => {
        clearTimeout(timer);
        waiters.delete(waiter);
        if (outcome instanceof Error) reject(outcome);
        else resolve(outcome);
      };
      const waiter = () => {
        const outcome = check();
        if (outcome !== undefined) finish(outcome);
      };
      waiters.add(waiter);
      waiter();
    });
  return {
    socket,
    frames,
    write: (data) => socket.write(data),
    frameWhere: (match, timeoutMs = 10_000) => wait(() => frames.find(match) ?? (closed ? new Error('the connection closed before the frame arrived') : undefined), timeoutMs),
    closedByServer: (timeoutMs = 10_000) => wait(() => (closed ? true : undefined), timeoutMs).then(() => undefined),
    destroy: () => socket.destroy(),
  };
}

export const goawayCode = (f: Frame): number => f.payload.readUInt32BE(4);
export const rstCode = (f: Frame): number => f.payload.readUInt32BE(0);

/**
 * A rapid-reset client (CVE-2023-44487): HEADERS + RST_STREAM(CANCEL) pairs
 * for `block`, 50 pairs a packet, what the attack sends, until the server
 * sends GOAWAY or closes, or `maxStreams` were sent. Returns the streams sent.
 */
export async function sendRapidResets(raw: RawH2, block: Buffer, maxStreams = 2000): Promise<number> {
  let stream = 1;
  while (stream < maxStreams * 2 && !raw.socket.destroyed && !raw.frames.some((f) => f.type === frameType.goaway)) {
    const pairs: Buffer[] = [];
    for (let i = 0; i < 50; i++, stream += 2) pairs.push(frame(frameType.headers, flag.endHeaders | flag.endStream, stream, block), frame(frameType.rstStream, 0, stream, Buffer.from([0, 0, 0, h2constants.NGHTTP2_CANCEL])));
    raw.write(Buffer.concat(pairs));
    await new Promise(setImmediate);
  }
  return (stream - 1) / 2;
}
