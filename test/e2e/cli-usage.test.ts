import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { get } from 'node:https';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { test } from 'node:test';
import { run } from '../helpers/clients.js';
import { cliEnv, cliMain, runCli, startCli, tsxImport } from '../helpers/cli-process.js';
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

/** A module recorder for one process: the node options that install it, and the file URLs it has seen load so far (query strings dropped). */
function moduleRecorder(t: Scope): { nodeOptions: string[]; urls(): string[] } {
  const dir = tempDir(t, 'pcl-loads-');
  const log = join(dir, 'loaded.txt');
  writeFileSync(log, '');
  writeFileSync(join(dir, 'hooks.mjs'), recorderHooks);
  writeFileSync(join(dir, 'register.mjs'), `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)}, { data: { log: ${JSON.stringify(log)} } });\n`);
  return {
    nodeOptions: ['--import', pathToFileURL(join(dir, 'register.mjs')).href],
    urls: () => [...new Set(readFileSync(log, 'utf8').split('\n').filter((url) => url.startsWith('file:')).map((url) => url.replace(/\?.*$/, '')))],
  };
}

/** Runs `portcullis …args` from the source and returns the files of src/ it loaded (relative to src/, sorted). */
async function srcModulesLoadedBy(t: Scope, args: readonly string[]): Promise<{ code: number; loaded: string[] }> {
  const recorder = moduleRecorder(t);
  const r = await run(process.execPath, [...tsxImport, ...recorder.nodeOptions, cliMain, ...args], '', undefined, cliEnv);
  const loaded = recorder
    .urls()
    .map((url) => relative(srcDir, fileURLToPath(url)))
    .filter((file) => !file.startsWith('..') && !file.includes(`node_modules${sep}`));
  return { code: r.code, loaded: loaded.sort() };
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

/*
 * A running proxy loads what serving needs; the ACME client (acme-client with
 * axios and node-forge: about 25 MB of RSS on Node 20, 40 MB on Node 24 when
 * loaded alone) loads with the first exchange with an ACME server, so an
 * instance without acme sites never carries it (docs/benchmarks.md, "Memory").
 */
test('a running quickstart that has served a request has not loaded the ACME client (acme-client, axios, node-forge) nor the ACME order code', async (t) => {
  const recorder = moduleRecorder(t);
  const cwd = tempDir(t, 'pcl-quickstart-');
  const proc = startCli(t, ['start', '--listen', '127.0.0.1:0'], cwd, recorder.nodeOptions);
  const [, url] = await proc.waitFor(/serving (https:\/\/localhost:\d+\/)/);
  const [, caFile] = await proc.waitFor(/Its local CA is (\S+);/);
  const status = await new Promise<number | undefined>((resolve, reject) => {
    get(url as string, { ca: readFileSync(caFile as string), agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    }).on('error', reject);
  });
  assert.equal(status, 200);
  const urls = recorder.urls();
  // the recorder sees the proxy's own modules and the CommonJS packages it loads (pino, like acme-client, is CommonJS)
  assert.ok(urls.some((u) => u.endsWith('/src/supervisor/control-plane.ts')), urls.join('\n'));
  assert.ok(urls.some((u) => u.includes('/node_modules/pino/')), urls.join('\n'));
  assert.deepEqual(
    urls.filter((u) => /\/node_modules\/(acme-client|axios|node-forge)\/|\/src\/acme\/order\.ts$/.test(u)),
    [],
  );
});
