import { closeSync, mkdirSync, openSync, write } from 'node:fs';
import { dirname } from 'node:path';

/**
 * The access log: one JSON line per request, apart from the diagnostic log.
 * Lines are collected and written asynchronously in batches, so the request
 * path never waits for the destination: it encodes its line into the batch
 * buffer, which is reused once written.
 *
 * - Every write holds whole lines. To a pipe (stdout under a supervisor) a
 *   write is at most PIPE_BUF (4096 bytes), which the kernel keeps atomic, so
 *   worker processes sharing one stdout never splice each other's lines.
 * - A full non-blocking pipe (EAGAIN) is retried, in order; a partial write is
 *   continued.
 * - A line is at most a second late. When the destination cannot keep up, at
 *   most `maxPendingLines` wait; beyond that lines are dropped and reported,
 *   memory does not grow.
 */
/** Encoded lines for one write; `buffer` is the reusable buffer they are in (null for a line too long for one). */
interface Batch {
  readonly data: Buffer;
  readonly buffer: Buffer | null;
  readonly lines: number;
}

export interface AccessLog {
  /**
   * Writes one line: `{"time":…,"log":"access",` then `fields`, which is the
   * inside of a JSON object (`"a":1,"b":"x"`) the caller built, then `}`.
   */
  write(fields: string): void;
  /** Reopens a file destination (after logrotate moved it); no-op for stdout/stderr. */
  reopen(): void;
  /** Writes out everything collected (at shutdown), waiting at most `timeoutMs`; never rejects. */
  flush(timeoutMs?: number): Promise<void>;
}

const pipeBuf = 4096;
const fileChunk = 64 * 1024;
/** The size of a batch buffer: a file write takes a full one, a pipe write whole lines of at most PIPE_BUF from it. */
const batchBytes = 64 * 1024;
const flushEveryMs = 1000;
const retryEagainMs = 10;
const maxPendingLines = 100_000;
const reportEveryMs = 10_000;

/**
 * `destination` is 'stdout', 'stderr' or an absolute file path ('off' means no
 * access log: don't call this). `onTrouble` hears about failed writes and
 * dropped lines, at most every 10 s.
 */
export function createAccessLog(destination: string, onTrouble: (message: string) => void = () => {}): AccessLog {
  const isFile = destination !== 'stdout' && destination !== 'stderr';
  const chunkLimit = isFile ? fileChunk : pipeBuf;
  const open = (): number => {
    if (!isFile) return destination === 'stdout' ? 1 : 2;
    mkdirSync(dirname(destination), { recursive: true });
    return openSync(destination, 'a', 0o640);
  };
  let fd = open();
  /** A descriptor replaced by `reopen` while a write on it was in flight: closed when that write ends. */
  let retiredFd: number | null = null;
  /**
   * Lines are encoded into a batch buffer as they come, so that a line's
   * string dies young instead of waiting for the write in the JavaScript heap;
   * full batches queue up for the one write in flight. Buffers are reused.
   */
  let current: Buffer = Buffer.allocUnsafe(batchBytes);
  let used = 0;
  let currentLines = 0;
  const full: Batch[] = [];
  const spare: Buffer[] = [];
  let inFlight: Batch | null = null;
  /** Lines not written yet: in the current batch, queued, or in flight. */
  let pendingLines = 0;
  let idle: (() => void) | null = null;
  let dropped = 0;
  let reportedAt = 0;
  // one ISO timestamp per millisecond, not per line
  let stampedAt = 0;
  let stamp = '';

  const report = (message: string): void => {
    const now = Date.now();
    if (now - reportedAt < reportEveryMs) return;
    reportedAt = now;
    onTrouble(message);
  };

  /**
   * The end of the next write in `data` from `start`: the whole rest for a file;
   * for a pipe, whole lines up to `chunkLimit` bytes (at least one line).
   */
  const chunkEnd = (data: Buffer, start: number): number => {
    if (data.length - start <= chunkLimit) return data.length;
    const lastNewline = data.lastIndexOf(0x0a, start + chunkLimit - 1);
    if (lastNewline >= start) return lastNewline + 1;
    const next = data.indexOf(0x0a, start + chunkLimit);
    return next === -1 ? data.length : next + 1;
  };

  /** Queues the current batch for writing and starts a new one. */
  const seal = (): void => {
    if (currentLines === 0) return;
    full.push({ data: current.subarray(0, used), buffer: current, lines: currentLines });
    current = spare.pop() ?? Buffer.allocUnsafe(batchBytes);
    used = 0;
    currentLines = 0;
  };

  const finished = (): void => {
    const batch = inFlight as Batch;
    inFlight = null;
    pendingLines -= batch.lines;
    if (batch.buffer !== null && spare.length < 2) spare.push(batch.buffer);
    if (retiredFd !== null) {
      closeSync(retiredFd);
      retiredFd = null;
    }
    if (full.length > 0 || used >= chunkLimit) writeNext();
    else if (pendingLines === 0) idle?.();
  };

  /** Writes `data` from `offset` up to `end`, then the chunks after it; a failed chunk is reported and skipped. */
  const writeOut = (data: Buffer, offset: number, end: number): void => {
    write(fd, data, offset, end - offset, null, (err, written) => {
      if (err?.code === 'EAGAIN') {
        setTimeout(() => writeOut(data, offset, end), retryEagainMs);
        return;
      }
      if (err) report(`access log ${destination}: write failed (${err.code ?? err.message}); ${end - offset} bytes lost`);
      else if (offset + written < end) return writeOut(data, offset + written, end);
      if (end < data.length) writeOut(data, end, chunkEnd(data, end));
      else finished();
    });
  };

  const writeNext = (): void => {
    if (dropped > 0) {
      report(`access log ${destination}: ${dropped} line(s) dropped because the destination could not keep up`);
      dropped = 0;
    }
    if (inFlight !== null) return;
    if (full.length === 0) seal();
    const batch = full.shift();
    if (batch === undefined) return;
    inFlight = batch;
    writeOut(batch.data, 0, chunkEnd(batch.data, 0));
  };
  setInterval(writeNext, flushEveryMs).unref();

  return {
    write: (fields) => {
      if (pendingLines >= maxPendingLines) {
        dropped++;
        return;
      }
      const now = Date.now();
      if (now !== stampedAt) {
        stampedAt = now;
        stamp = new Date(now).toISOString();
      }
      const line = `{"time":"${stamp}","log":"access",${fields}}\n`;
      pendingLines++;
      // a UTF-16 unit takes at most 3 bytes in UTF-8: only a line that may not fit is measured
      if (line.length * 3 > batchBytes - used) {
        const size = Buffer.byteLength(line);
        if (size > batchBytes - used) seal();
        if (size > batchBytes) {
          full.push({ data: Buffer.from(line), buffer: null, lines: 1 });
          writeNext();
          return;
        }
      }
      used += current.write(line, used);
      currentLines++;
      if (used >= chunkLimit) {
        seal();
        writeNext();
      }
    },
    reopen: () => {
      if (!isFile) return;
      const old = fd;
      fd = open();
      if (inFlight !== null) retiredFd = old;
      else closeSync(old);
    },
    flush: async (timeoutMs = 5_000) => {
      if (inFlight === null && pendingLines === 0) return;
      const done = new Promise<void>((resolve) => (idle = resolve));
      // with lines pending and nothing in flight, write them out back to back
      const drainAll = (): void => {
        if (inFlight === null) writeNext();
      };
      const pump = setInterval(drainAll, 1);
      drainAll();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([done, new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
      clearInterval(pump);
      clearTimeout(timer);
      idle = null;
      if (pendingLines > 0) report(`access log ${destination}: ${pendingLines} line(s) not written at shutdown`);
    },
  };
}
