import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { Scope } from './proxy.js';

export const cliPath = join(import.meta.dirname, '..', '..', 'bin', 'portcullis.js');

export interface CliProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  stdout: string;
  stderr: string;
  /** Resolves with the first match of `pattern` in stdout+stderr, waiting for more output as needed (at most `timeoutMs`). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
}

/** Runs the built `portcullis` CLI as its own process; it is killed after the test. */
export function startCli(t: Scope, args: readonly string[], cwd: string): CliProcess {
  const child = spawn(process.execPath, [cliPath, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const waiters: { pattern: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  const proc: CliProcess = {
    child,
    pid: child.pid as number,
    stdout: '',
    stderr: '',
    waitFor(pattern, timeoutMs = 20_000) {
      const m = (proc.stdout + proc.stderr).match(pattern);
      if (m) return Promise.resolve(m);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`portcullis did not print ${pattern} within ${timeoutMs} ms:\n${proc.stdout}\n${proc.stderr}`)), timeoutMs);
        waiters.push({
          pattern,
          resolve: (match) => {
            clearTimeout(timer);
            resolve(match);
          },
        });
        child.once('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`portcullis exited (${code}) before printing ${pattern}:\n${proc.stdout}\n${proc.stderr}`));
        });
      });
    },
  };
  const check = () => {
    for (const w of [...waiters]) {
      const m = (proc.stdout + proc.stderr).match(w.pattern);
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  };
  child.stdout.on('data', (d: Buffer) => {
    proc.stdout += d.toString();
    check();
  });
  child.stderr.on('data', (d: Buffer) => {
    proc.stderr += d.toString();
    check();
  });
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
    }
  });
  return proc;
}
