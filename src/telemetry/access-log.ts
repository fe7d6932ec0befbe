import { closeSync, mkdirSync, openSync, write, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * The access log: one JSON line per request, apart from the diagnostic log.
 * Lines are collected and written asynchronously in batches, so the request
 * path never waits for the disk and pays one array push per line; a line is
 * at most a second late. Bounded: when the destination cannot keep up, lines
 * beyond `maxPendingLines` are dropped and reported instead of filling memory.
 */
export interface AccessLog {
  /**
   * Writes one line: `{"time":…,"log":"access",` then `fields`, which is the
   * inside of a JSON object (`"a":1,"b":"x"`) the caller built, then `}`.
   */
  write(fields: string): void;
  /** Reopens a file destination (after logrotate moved it); no-op for stdout/stderr. */
  reopen(): void;
  /** Writes out everything collected (at shutdown): waits for a write in flight, then writes the rest. */
  flush(): Promise<void>;
}

/** A batch is written once this many lines are collected, or every `flushEveryMs`. */
const batchLines = 256;
const flushEveryMs = 1000;
const maxPendingLines = 100_000;
const reportEveryMs = 10_000;

/**
 * `destination` is 'stdout', 'stderr' or an absolute file path ('off' means no
 * access log: don't call this). `onTrouble` hears about failed writes and
 * dropped lines, at most every 10 s.
 */
export function createAccessLog(destination: string, onTrouble: (message: string) => void = () => {}): AccessLog {
  const isFile = destination !== 'stdout' && destination !== 'stderr';
  const open = (): number => {
    if (!isFile) return destination === 'stdout' ? 1 : 2;
    mkdirSync(dirname(destination), { recursive: true });
    return openSync(destination, 'a', 0o640);
  };
  let fd = open();
  /** A file descriptor replaced by `reopen` while a write on it was in flight: closed when that write ends. */
  let retiredFd: number | null = null;
  let lines: string[] = [];
  let writing = false;
  /** Resolved when the write in flight ends. */
  let written: Promise<void> = Promise.resolve();
  let wroteOut = (): void => {};
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

  /** Writes `data` from `offset` on, continuing after partial writes (pipes). */
  const writeOut = (data: Buffer, offset: number): void => {
    write(fd, data, offset, data.length - offset, null, (err, written) => {
      if (err) report(`access log ${destination}: write failed (${err.code ?? err.message}); ${data.length - offset} bytes lost`);
      else if (offset + written < data.length) return writeOut(data, offset + written);
      writing = false;
      wroteOut();
      if (retiredFd !== null) {
        closeSync(retiredFd);
        retiredFd = null;
      }
      if (lines.length >= batchLines) writeBatch();
    });
  };

  const writeBatch = (): void => {
    if (dropped > 0) {
      report(`access log ${destination}: ${dropped} line(s) dropped because the destination could not keep up`);
      dropped = 0;
    }
    if (writing || lines.length === 0) return;
    writing = true;
    written = new Promise((resolve) => (wroteOut = resolve));
    const data = Buffer.from(lines.join(''));
    lines = [];
    writeOut(data, 0);
  };
  setInterval(writeBatch, flushEveryMs).unref();

  return {
    write: (fields) => {
      if (lines.length >= maxPendingLines) {
        dropped++;
        return;
      }
      const now = Date.now();
      if (now !== stampedAt) {
        stampedAt = now;
        stamp = new Date(now).toISOString();
      }
      lines.push(`{"time":"${stamp}","log":"access",${fields}}\n`);
      if (lines.length >= batchLines) writeBatch();
    },
    reopen: () => {
      if (!isFile) return;
      const old = fd;
      fd = open();
      if (writing) retiredFd = old;
      else closeSync(old);
    },
    flush: async () => {
      if (writing) await written;
      if (lines.length === 0) return;
      writeSync(fd, lines.join(''));
      lines = [];
    },
  };
}
