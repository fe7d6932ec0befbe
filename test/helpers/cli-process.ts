import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { run, type RunResult } from './clients.js';
import type { Scope } from './proxy.js';

/*
 * Tests run the CLI from its TypeScript source, never through
 * bin/portcullis.js: that loads dist/, which only `npm run build` updates, so
 * a test file run alone after an edit of src/ would test the old build (or
 * fail where there is none). tsx is resolved from this project, since a CLI
 * child runs in a temp folder where `--import tsx` would not find it, and is
 * told the project's tsconfig. Cluster workers run the source too:
 * cluster.fork() starts `process.execPath` with the primary's execArgv (the
 * --import) and main module (src/cli/main.ts), as test/e2e/cli-source.test.ts
 * checks.
 */
const projectRoot = join(import.meta.dirname, '..', '..');

/** The CLI's entry point in the source tree. */
export const cliMain = join(projectRoot, 'src', 'cli', 'main.ts');

/** The node option that loads tsx, for any child that runs TypeScript of this project. */
export const tsxImport: readonly string[] = ['--import', import.meta.resolve('tsx')];

/** The environment of a CLI child: this process's, with the project's tsconfig for tsx. */
export const cliEnv: NodeJS.ProcessEnv = { ...process.env, TSX_TSCONFIG_PATH: join(projectRoot, 'tsconfig.json') };

/** The `node` arguments that run `portcullis …args` from the source. */
export function cliArgv(args: readonly string[]): string[] {
  return [...tsxImport, cliMain, ...args];
}

/** Runs one `portcullis` command from the source to its end (at most `timeoutMs`); never rejects, the exit code tells. */
export function runCli(args: readonly string[], timeoutMs?: number): Promise<RunResult> {
  return run(process.execPath, cliArgv(args), '', timeoutMs, cliEnv);
}

export interface CliProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  stdout: string;
  stderr: string;
  /** Resolves with the first match of `pattern` in stdout+stderr, waiting for more output as needed (at most `timeoutMs`). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
}

/**
 * Runs the `portcullis` CLI from the source as its own process; it is killed after the test.
 * `nodeOptions` go before the script, so cluster workers inherit them too.
 */
export function startCli(t: Scope, args: readonly string[], cwd: string, nodeOptions: readonly string[] = []): CliProcess {
  const child = spawn(process.execPath, [...nodeOptions, ...cliArgv(args)], { cwd, env: cliEnv, stdio: ['ignore', 'pipe', 'pipe'] });
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
