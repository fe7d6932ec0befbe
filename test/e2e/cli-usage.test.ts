import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { test } from 'node:test';
import { run } from '../helpers/clients.js';
import { cliEnv, cliMain, runCli, tsxImport } from '../helpers/cli-process.js';
import { tempDir, type Scope } from '../helpers/proxy.js';

/**
 * What a user meets first: the version, the help, a mistyped command. Each
 * answers at once, because the command implementations (and the proxy they
 * import) load only when their command runs.
 */

const srcDir = dirname(dirname(cliMain));
const { version } = JSON.parse(readFileSync(join(srcDir, '..', 'package.json'), 'utf8')) as { version: string };

/** The top-level commands, one per src/cli/<name>-command.ts. */
const commands = readdirSync(join(srcDir, 'cli'))
  .filter((f) => f.endsWith('-command.ts'))
  .map((f) => f.slice(0, -'-command.ts'.length));

/*
 * Module loading is observed with a module customization hook (node:module
 * register), which sees every URL the ESM loader loads, static or dynamic
 * import alike, and appends it to a file before loading it: what is in the
 * file when the process exits is what it loaded, with no timing involved.
 */
const recorderHooks = `import { appendFileSync } from 'node:fs';
let log;
export function initialize(data) { log = data.log; }
export async function load(url, context, nextLoad) {
  appendFileSync(log, url + '\\n');
  return nextLoad(url, context);
}
`;

/** Runs `portcullis …args` from the source and returns the files of src/ it loaded (relative to src/, sorted). */
async function srcModulesLoadedBy(t: Scope, args: readonly string[]): Promise<{ code: number; loaded: string[] }> {
  const dir = tempDir(t, 'pcl-loads-');
  const log = join(dir, 'loaded.txt');
  writeFileSync(log, '');
  writeFileSync(join(dir, 'hooks.mjs'), recorderHooks);
  writeFileSync(join(dir, 'register.mjs'), `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)}, { data: { log: ${JSON.stringify(log)} } });\n`);
  const r = await run(process.execPath, [...tsxImport, '--import', pathToFileURL(join(dir, 'register.mjs')).href, cliMain, ...args], '', undefined, cliEnv);
  const loaded = readFileSync(log, 'utf8')
    .split('\n')
    .filter((url) => url.startsWith('file:'))
    .map((url) => relative(srcDir, fileURLToPath(url.replace(/\?.*$/, ''))))
    .filter((file) => !file.startsWith('..') && !file.includes(`node_modules${sep}`));
  return { code: r.code, loaded: [...new Set(loaded)].sort() };
}

for (const flag of ['--version', '-V', '-v']) {
  test(`portcullis ${flag} prints the version of package.json alone and exits 0`, async () => {
    const r = await runCli([flag]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${version}\n`);
    assert.equal(r.stderr, '');
  });
}

test('portcullis --help lists every command and exits 0', async () => {
  assert.ok(commands.includes('start') && commands.length >= 9, `commands found in src/cli: ${commands.join(', ')}`);
  const r = await runCli(['--help']);
  assert.equal(r.code, 0, r.stderr);
  for (const command of commands) assert.match(r.stdout, new RegExp(`^  ${command}\\b`, 'm'), `--help does not list ${command}:\n${r.stdout}`);
  assert.match(r.stdout, /^ {2}-V, --version +print the version$/m);
});

for (const { args, why, code } of [
  { args: ['--help'], why: 'the help', code: 0 },
  { args: ['--version'], why: 'the version', code: 0 },
  { args: ['ca', '--help'], why: "a command group's help", code: 0 },
  { args: ['start', '--no-such-option'], why: 'a usage error', code: 2 },
  { args: ['no-such-command'], why: 'an unknown command', code: 2 },
]) {
  test(`portcullis ${args.join(' ')} (${why}) loads none of the command implementations, only main.ts and the error catalog`, async (t) => {
    const r = await srcModulesLoadedBy(t, args);
    assert.equal(r.code, code);
    assert.deepEqual(r.loaded, [join('cli', 'main.ts'), 'errors.ts']);
  });
}

test('a command that runs loads its implementation (the recorder above sees dynamic imports)', async (t) => {
  const r = await srcModulesLoadedBy(t, ['schema']);
  assert.equal(r.code, 0);
  assert.ok(r.loaded.includes(join('cli', 'schema-command.ts')), r.loaded.join('\n'));
  assert.ok(!r.loaded.includes(join('cli', 'start-command.ts')), r.loaded.join('\n'));
});
