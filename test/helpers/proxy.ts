import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after } from 'node:test';
import { pino } from 'pino';
import { loadConfigFile } from '../../src/config/index.js';
import { startPortcullis, type Portcullis } from '../../src/instance/index.js';
import { createAccessLog, type AccessLog } from '../../src/telemetry/index.js';

export interface RunningProxy {
  readonly proxy: Portcullis;
  readonly port: number;
  /** Every log line written so far, parsed. */
  readonly logs: Record<string, unknown>[];
  readonly dir: string;
  /** Writes out buffered access-log lines (when the config names an access-log file). */
  flushAccessLog(): Promise<void>;
  /** Resolves with the first log line (already written or to come) that `match` accepts after skipping `after` lines; rejects after `timeoutMs`. */
  waitForLog(match: (line: Record<string, unknown>) => boolean, opts?: { after?: number; timeoutMs?: number }): Promise<Record<string, unknown>>;
  /** The same for access-log records (when the config names an access-log file), as they are handed to the access log. */
  waitForAccess(match: (record: Record<string, unknown>) => boolean, opts?: { timeoutMs?: number }): Promise<Record<string, unknown>>;
}

/** Something that runs clean-ups when its test or suite ends: a TestContext, or `suiteScope()`. */
export interface Scope {
  after(fn: () => unknown): void;
}

/** A scope for a describe() block: clean-ups registered from its hooks run when the suite ends. Call it in the describe body. */
export function suiteScope(): Scope {
  const fns: (() => unknown)[] = [];
  after(async () => {
    for (const fn of fns.reverse()) await fn();
  });
  return { after: (fn) => void fns.push(fn) };
}

/** A folder removed after the test. */
export function tempDir(t: Scope, prefix = 'pcl-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes the YAML into a temp folder, loads it the way the CLI does, starts the proxy in-process and stops it after the test. */
export async function startProxy(t: Scope, yaml: string, dir = tempDir(t)): Promise<RunningProxy> {
  const file = join(dir, 'portcullis.yaml');
  writeFileSync(file, yaml);
  const config = loadConfigFile(file);
  const logs: Record<string, unknown>[] = [];
  const written = new EventEmitter();
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      written.emit('line');
      done();
    },
  });
  const waitIn =
    (lines: Record<string, unknown>[], what: string) =>
    (match: (line: Record<string, unknown>) => boolean, opts: { after?: number; timeoutMs?: number } = {}): Promise<Record<string, unknown>> =>
      new Promise((resolve, reject) => {
        const check = () => {
          const found = lines.slice(opts.after ?? 0).find(match);
          if (!found) return false;
          clearTimeout(timer);
          written.off('line', check);
          resolve(found);
          return true;
        };
        const timer = setTimeout(() => {
          written.off('line', check);
          reject(new Error(`no matching ${what} within ${opts.timeoutMs ?? 10_000} ms; last ones:\n${lines.slice(-5).map((l) => JSON.stringify(l)).join('\n')}`));
        }, opts.timeoutMs ?? 10_000);
        if (!check()) written.on('line', check);
      });
  const waitForLog = waitIn(logs, 'log line');
  const accessRecords: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, sink);
  // as the CLI does: an access log when the config names a file
  const accessFile = config.log.access.startsWith('/') ? createAccessLog(config.log.access) : null;
  // each record is also kept here, parsed, for waitForAccess
  const access: AccessLog | null = accessFile && {
    write(fields) {
      accessFile.write(fields);
      accessRecords.push(JSON.parse(`{${fields}}`) as Record<string, unknown>);
      written.emit('line');
    },
    reopen: () => accessFile.reopen(),
    flush: (timeoutMs) => accessFile.flush(timeoutMs),
  };
  const proxy = await startPortcullis(config, log, { accessLog: access });
  t.after(async () => {
    await proxy.close();
    await access?.flush();
  });
  return { proxy, port: proxy.address.port, logs, dir, flushAccessLog: async () => access?.flush(), waitForLog, waitForAccess: waitIn(accessRecords, 'access record') };
}
