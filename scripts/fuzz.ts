/**
 * The long fuzz run, by hand (not part of the default test command):
 *
 *   node --import tsx scripts/fuzz.ts [--minutes N] [--target name[,name…]] [--seed N] [--batch N] [--concurrency N]
 *   node --import tsx scripts/fuzz.ts --replay net-http1:<hex>   (one network input, as a report prints it)
 *
 * Runs the property suites of test/properties/ (the same properties as
 * test/unit/*-property.test.ts) with random seeds for a share of the time,
 * then a network fuzzer against the proxy started in-process: random and
 * mutated ClientHellos on the TLS port, random bytes and odd requests after
 * a TLS handshake on HTTP/1.1, random frames on HTTP/2; after every batch a
 * good HTTP/1.1 and a good HTTP/2 client must still be served, and the proxy
 * must have logged no internal error. Properties marked with a known defect
 * are checked once to say whether the defect still reproduces, not fuzzed.
 *
 * Prints a summary; for each failure the seed, the fast-check path and the
 * input (byte strings in hex), so it can be replayed and turned into a
 * regression test: a property failure replays with
 * `PCL_PROPERTY_SEED=<seed> node --import tsx --test --test-name-pattern '<name>' test/unit/<area>-property.test.ts`
 * (the fuzz run uses the test's numRuns), a network input with --replay.
 * Exit code 1 when anything new failed. Targets:
 * client-hello, config, header-hygiene, identity, control-socket, admin,
 * net-hello, net-http1, net-http2. docs/reliability.md has the last run.
 */
import { parseArgs } from 'node:util';
import fc from 'fast-check';
import { adminProperties } from '../test/properties/admin.js';
import { clientHelloProperties } from '../test/properties/client-hello.js';
import { configProperties } from '../test/properties/config.js';
import { controlSocketProperties } from '../test/properties/control-socket.js';
import { describeInput, type PropertyCase, type PropertySuite } from '../test/properties/harness.js';
import { headerHygieneProperties } from '../test/properties/header-hygiene.js';
import { identityProperties } from '../test/properties/identity.js';
import { goodClientsServed, networkTargets, startFuzzProxy, type NetworkProxy, type NetworkTarget } from './fuzz-network.js';

// the YAML library warns about odd mapping keys the config fuzzer feeds it on purpose
process.removeAllListeners('warning');

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    target: { type: 'string' },
    seed: { type: 'string' },
    batch: { type: 'string', default: '40' },
    concurrency: { type: 'string', default: '16' },
    replay: { type: 'string' },
  },
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- suites of different context types share the runner
const suites: PropertySuite<any>[] = [clientHelloProperties, configProperties, headerHygieneProperties, identityProperties, controlSocketProperties, adminProperties];
const allTargets = [...suites.map((s) => s.target), ...networkTargets.map((t) => t.target)];
const selected = args.target ? args.target.split(',').map((t) => t.trim()) : allTargets;
for (const t of selected) if (!allTargets.includes(t)) throw new Error(`unknown target ${t}; one of ${allTargets.join(', ')}`);
const budgetMs = Number(args.minutes) * 60_000;
const shareMs = budgetMs / selected.length;
const batchSize = Number(args.batch);
const concurrency = Number(args.concurrency);

// seeds: from --seed when given (a replayable run), else random
let seedState = args.seed ? Number(args.seed) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
const baseSeed = seedState;
const nextSeed = () => {
  seedState = (Math.imul(seedState, 1664525) + 1013904223) >>> 0;
  return seedState | 0;
};

interface Row {
  readonly target: string;
  readonly name: string;
  cases: number;
  checks: number;
  failures: number;
  note: string;
}
interface Finding {
  readonly target: string;
  readonly name: string;
  readonly seed: number | null;
  readonly path: string | null;
  readonly input: string;
  readonly error: string;
}

const rows: Row[] = [];
const findings: Finding[] = [];
const known: { target: string; name: string; defect: string; reproduces: boolean }[] = [];
/** Inputs on the wire right now: what to print if the process is about to die. */
const inFlight = new Set<Buffer[]>();
let currentTarget = '';

const report = (f: Finding) => {
  findings.push(f);
  console.log(`\n!! ${f.target}: ${f.name}\n   seed ${f.seed ?? '-'}${f.path ? `, path ${f.path}` : ''}\n   input ${f.input}\n   ${f.error.split('\n').slice(0, 6).join('\n   ')}\n`);
};

// an uncaught exception in the proxy or a listener would have killed a real instance
for (const event of ['uncaughtException', 'unhandledRejection'] as const) {
  process.on(event, (err: unknown) => {
    report({ target: currentTarget, name: `process-level ${event}`, seed: null, path: null, input: [...inFlight].map((c) => describeInput(Buffer.concat(c))).join(' | ') || '(none in flight)', error: (err as Error)?.stack ?? String(err) });
    printSummary();
    process.exit(1);
  });
}

const short = (text: string, n: number) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

async function runSuite<C>(suite: PropertySuite<C>, deadline: number): Promise<void> {
  const ctx = await suite.open();
  try {
    const active = suite.cases.filter((c) => !c.knownDefect);
    for (const c of suite.cases.filter((x) => x.knownDefect)) {
      const details = await fc.check(c.property(ctx), { numRuns: c.runs, seed: nextSeed() });
      known.push({ target: suite.target, name: c.name, defect: c.knownDefect as string, reproduces: details.failed });
    }
    const rowOf = new Map<PropertyCase<C>, Row>(active.map((c) => [c, { target: suite.target, name: c.name, cases: 0, checks: 0, failures: 0, note: '' }]));
    rows.push(...rowOf.values());
    const failed = new Set<PropertyCase<C>>();
    while (Date.now() < deadline && failed.size < active.length) {
      for (const c of active) {
        if (failed.has(c) || Date.now() >= deadline) continue;
        const seed = nextSeed();
        const row = rowOf.get(c) as Row;
        let details: fc.RunDetails<never>;
        try {
          details = await fc.check(c.property(ctx), { numRuns: c.runs, seed, interruptAfterTimeLimit: Math.max(1000, deadline - Date.now()) });
        } catch (err) {
          // a generator that throws is a bug of the test side; report it and go on with the others
          row.failures++;
          failed.add(c);
          row.note = 'the property itself threw';
          report({ target: suite.target, name: c.name, seed, path: null, input: '(generation failed)', error: String((err as Error).stack ?? err) });
          continue;
        }
        row.cases += details.numRuns;
        row.checks++;
        if (details.failed) {
          row.failures++;
          failed.add(c);
          row.note = 'stopped after its first failure';
          report({ target: suite.target, name: c.name, seed, path: details.counterexamplePath, input: describeInput(details.counterexample), error: String((details.errorInstance as Error | undefined)?.stack ?? details.errorInstance) });
        }
      }
    }
  } finally {
    await suite.close(ctx);
  }
}

async function runPool<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await fn(items[next++] as T);
    }),
  );
}

/** Which inputs of a failed batch reproduce the failure on their own: sent one by one, each followed by the checks. */
async function isolate(proxy: NetworkProxy, target: NetworkTarget, inputs: readonly Buffer[][]): Promise<Buffer[][]> {
  const culprits: Buffer[][] = [];
  for (const input of inputs) {
    await target.send(proxy, input);
    const errors = proxy.takeErrors();
    const refused = await goodClientsServed(proxy);
    if (errors.length > 0 || refused) culprits.push(input);
  }
  return culprits;
}

async function runNetwork(proxy: NetworkProxy, target: NetworkTarget, deadline: number): Promise<void> {
  const row: Row = { target: target.target, name: target.title, cases: 0, checks: 0, failures: 0, note: '' };
  rows.push(row);
  while (Date.now() < deadline) {
    const seed = nextSeed();
    const inputs = fc.sample(target.input, { numRuns: batchSize, seed });
    await runPool(inputs, concurrency, async (input) => {
      inFlight.add(input);
      try {
        await target.send(proxy, input);
      } finally {
        inFlight.delete(input);
      }
    });
    row.cases += inputs.length;
    const errors = proxy.takeErrors();
    const refused = await goodClientsServed(proxy);
    row.checks++;
    if (errors.length > 0 || refused) {
      row.failures++;
      const culprits = await isolate(proxy, target, inputs);
      report({
        target: target.target,
        name: refused ? `a good client was not served after a batch (${refused})` : 'the proxy logged an internal error',
        seed,
        path: null,
        input: culprits.length ? culprits.map((c) => describeInput(Buffer.concat(c))).join('\n   input ') : `(not reproduced alone; the whole batch of ${inputs.length}, fc.sample seed ${seed})`,
        error: errors.slice(0, 3).join('\n') || (refused as string),
      });
      // a proxy that stopped serving cannot be fuzzed further
      if (refused && (await goodClientsServed(proxy))) return;
    }
  }
}

function printSummary(): void {
  const minutes = (performance.now() / 60_000).toFixed(1);
  console.log(`\nPortcullis fuzz run: ${minutes} min, base seed ${baseSeed}, targets ${selected.join(', ')}\n`);
  console.log(`${'target'.padEnd(15)}${'cases'.padStart(10)}${'checks'.padStart(8)}${'fail'.padStart(6)}  property / fuzzer`);
  for (const r of rows) console.log(`${r.target.padEnd(15)}${String(r.cases).padStart(10)}${String(r.checks).padStart(8)}${String(r.failures).padStart(6)}  ${short(r.name, 110)}${r.note ? ` (${r.note})` : ''}`);
  const total = rows.reduce((n, r) => n + r.cases, 0);
  console.log(`\n${total} cases, ${findings.length} new finding(s)`);
  if (known.length) {
    console.log('\nknown defects (properties marked TODO, checked once, not fuzzed):');
    for (const k of known) console.log(`  ${k.reproduces ? 'reproduces   ' : 'NOT REPRODUCED'}  ${k.target}: ${short(k.defect, 120)}`);
  }
}

/** Sends one network input to a fresh proxy and says what happened. */
async function replay(spec: string): Promise<void> {
  const [name, hex] = spec.split(':') as [string, string | undefined];
  const target = networkTargets.find((t) => t.target === name);
  if (!target || hex === undefined) throw new Error(`--replay takes <${networkTargets.map((t) => t.target).join('|')}>:<hex>`);
  const proxy = await startFuzzProxy();
  try {
    const outcome = await target.send(proxy, [Buffer.from(hex.replace(/^hex:/, ''), 'hex')]);
    const { answer, ...rest } = outcome as { answer: Buffer };
    console.log('outcome:', rest, 'answer:', JSON.stringify(answer.subarray(0, 300).toString('latin1')));
    console.log('proxy errors:', proxy.takeErrors());
    console.log('good clients:', (await goodClientsServed(proxy)) ?? 'served');
  } finally {
    await proxy.close();
  }
}

async function main(): Promise<void> {
  if (args.replay) return replay(args.replay);
  const started = Date.now();
  let proxy: NetworkProxy | null = null;
  try {
    for (const [i, target] of selected.entries()) {
      currentTarget = target;
      const deadline = started + shareMs * (i + 1);
      const suite = suites.find((s) => s.target === target);
      console.log(`[${((Date.now() - started) / 1000).toFixed(0)}s] ${target} until +${((deadline - started) / 1000).toFixed(0)}s`);
      if (suite) await runSuite(suite, deadline);
      else {
        proxy ??= await startFuzzProxy();
        await runNetwork(proxy, networkTargets.find((t) => t.target === target) as NetworkTarget, deadline);
      }
    }
  } finally {
    await proxy?.close();
  }
  printSummary();
  process.exitCode = findings.length > 0 ? 1 : 0;
}

await main();
