import { startCli, type CliProcess } from './cli-process.js';
import type { Scope } from './proxy.js';

/** One diagnostic log line of a `portcullis start` child, parsed. */
export type LogLine = Record<string, unknown>;

/** The complete diagnostic lines in `text`, parsed (a chunk may end in the middle of one). */
function parseLines(text: string): LogLine[] {
  return text
    .slice(0, text.lastIndexOf('\n') + 1)
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);
}

/** The diagnostic lines the instance wrote to stderr from byte `from` on (`cli.stderr.length` marks "from now on"). */
export const linesOf = (cli: CliProcess, from = 0): LogLine[] => parseLines(cli.stderr.slice(from));

/** Resolves with the first diagnostic line written after byte `from` that `match` accepts; rejects after `timeoutMs` or when the instance exits. */
export function nextLine(cli: CliProcess, from: number, match: (line: LogLine) => boolean, timeoutMs = 10_000): Promise<LogLine> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const found = linesOf(cli, from).find(match);
      if (!found) return;
      done();
      resolve(found);
    };
    const exited = () => {
      done();
      reject(new Error(`portcullis exited before the expected line:\n${cli.stderr.slice(from)}`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`no matching line within ${timeoutMs} ms; written since:\n${cli.stderr.slice(from)}`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      cli.child.stderr?.off('data', check);
      cli.child.off('exit', exited);
    };
    cli.child.stderr?.on('data', check);
    cli.child.once('exit', exited);
    check();
  });
}

/** Runs `portcullis start --config file` in `dir` (killed after the test) and resolves with its HTTPS port once it listens. */
export async function startInstance(t: Scope, dir: string, file: string): Promise<{ cli: CliProcess; port: number }> {
  const cli = startCli(t, ['start', '--config', file], dir);
  const port = Number((await cli.waitFor(/"event":"listening"[^\n]*"https":"127\.0\.0\.1:(\d+)"/))[1]);
  return { cli, port };
}
