import { pino } from 'pino';

/**
 * The access log: one JSON line per request, apart from the diagnostic log.
 * Lines are buffered and written asynchronously (the request path never
 * waits for the disk); `flush` on shutdown, `reopen` after log rotation.
 */
export interface AccessLog {
  /** Writes one line: `time` (ISO 8601), `"log": "access"`, then the record's fields. */
  write(record: Record<string, unknown>): void;
  /** Reopens a file destination (after logrotate moved it); no-op for stdout/stderr. */
  reopen(): void;
  flush(): void;
}

/** `destination` is 'stdout', 'stderr' or an absolute file path ('off' means no access log: don't call this). */
export function createAccessLog(destination: string): AccessLog {
  const fd = destination === 'stdout' ? 1 : destination === 'stderr' ? 2 : undefined;
  // pino's SonicBoom destination: buffered, asynchronous, reopenable
  const stream = pino.destination({ ...(fd === undefined ? { dest: destination, mkdir: true, append: true } : { fd }), sync: false, minLength: 4096 });
  return {
    write: (record) => {
      stream.write(`${JSON.stringify({ time: new Date().toISOString(), log: 'access', ...record })}\n`);
    },
    reopen: () => {
      if (fd === undefined) stream.reopen();
    },
    flush: () => {
      try {
        stream.flushSync();
      } catch {
        // not opened yet: nothing was buffered
      }
    },
  };
}
