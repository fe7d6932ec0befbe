/**
 * Turns a soak run into its verdicts (the checks) and a Markdown summary,
 * printed on stdout and, with --report, written to a file for
 * docs/reliability.md.
 */
import type { HarnessStats } from './protocol.js';
import { reloadWindowMs, type Failure, type Tally } from './tally.js';

export interface Sample {
  /** Milliseconds since the measured traffic started. */
  readonly t: number;
  readonly stats: HarnessStats;
}

export interface MinuteRow {
  readonly minute: number;
  readonly samples: number;
  readonly meanMb: number;
  readonly maxMb: number;
  readonly heapMeanMb: number;
  /** external (C++ objects tied to JS ones: buffers, TLS contexts) */
  readonly externalMeanMb: number;
}

export interface Flatness {
  /** Mean RSS of the middle minute (the reference) and of the last minute, MB. */
  readonly referenceMb: number;
  readonly lastMb: number;
  readonly changePct: number;
  /** Least-squares slope over the second half, MB per minute (null: too few samples). */
  readonly slopeMbPerMin: number | null;
  /** null: too short to judge (needs at least 6 minutes). */
  readonly flat: boolean | null;
}

export interface Check {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

export interface SoakRun {
  readonly command: string;
  readonly machine: string;
  readonly node: string;
  readonly startedAt: Date;
  readonly minutes: number;
  readonly warmupSeconds: number;
  readonly reloadEverySeconds: number;
  readonly tally: Tally;
  readonly samples: readonly Sample[];
  readonly baseline: HarnessStats | null;
  readonly final: HarnessStats | null;
  /** How long after the traffic stopped the final figures were taken, and whether they were back to the baseline by then. */
  readonly settledAfterMs: number;
  readonly upstreamConnections: { readonly baseline: number; readonly final: number };
  /** Heap after a forced GC, MB: after warm-up, after the run. */
  readonly heapAfterGc: { readonly baseline: number; readonly final: number } | null;
  readonly crashed: string | null;
  readonly cpu: { readonly harnessPct: number; readonly generatorPct: number };
  readonly logEvents: ReadonlyMap<string, number>;
  readonly logErrors: readonly string[];
  readonly access: { readonly lines: number; readonly byStatus: ReadonlyMap<string, number>; readonly incomplete: ReadonlyMap<string, number> };
}

const mb = (bytes: number) => bytes / 1024 / 1024;
const fmt = (n: number, digits = 1) => n.toFixed(digits);

export function minuteRows(samples: readonly Sample[]): MinuteRow[] {
  const rows: MinuteRow[] = [];
  for (const s of samples) {
    const minute = Math.floor(s.t / 60_000) + 1;
    let row = rows[minute - 1];
    if (!row) {
      for (let m = rows.length + 1; m <= minute; m++) rows[m - 1] = { minute: m, samples: 0, meanMb: 0, maxMb: 0, heapMeanMb: 0, externalMeanMb: 0 };
      row = rows[minute - 1]!;
    }
    const n = row.samples + 1;
    rows[minute - 1] = {
      minute,
      samples: n,
      meanMb: row.meanMb + (mb(s.stats.rss) - row.meanMb) / n,
      maxMb: Math.max(row.maxMb, mb(s.stats.rss)),
      heapMeanMb: row.heapMeanMb + (mb(s.stats.heapUsed) - row.heapMeanMb) / n,
      externalMeanMb: row.externalMeanMb + (mb(s.stats.external) - row.externalMeanMb) / n,
    };
  }
  return rows.filter((r) => r.samples > 0);
}

/**
 * "Flat" is judged over the second half of the run, never against its
 * start: RSS rises for the first minutes (V8 growing its heap to the working
 * size, session caches and upstream pools filling, glibc arenas reaching
 * their size under connection churn) and must then stay: the last minute's
 * mean within 5 % of the middle minute's, and the least-squares slope of the
 * second half at most 0.5 MB per minute (a leak keeps a positive slope).
 * A run shorter than 6 minutes is too short to tell a ramp from a leak.
 */
export function flatness(rows: readonly MinuteRow[], minutes: number, samples: readonly Sample[]): Flatness | null {
  const reference = rows.find((r) => r.minute === Math.ceil(minutes / 2));
  const last = rows.find((r) => r.minute === Math.ceil(minutes));
  if (!reference || !last) return null;
  const changePct = ((last.meanMb - reference.meanMb) / reference.meanMb) * 100;
  const slopeMbPerMin = secondHalfSlope(samples);
  const flat = minutes >= 6 && slopeMbPerMin !== null ? Math.abs(changePct) <= maxChangePct && slopeMbPerMin <= maxSlopeMbPerMin : null;
  return { referenceMb: reference.meanMb, lastMb: last.meanMb, changePct, slopeMbPerMin, flat };
}

const maxChangePct = 5;
const maxSlopeMbPerMin = 0.5;

/** Least-squares slope of RSS over the second half of the run, MB per minute: a leak keeps a positive slope, a warm-up flattens out. */
function secondHalfSlope(samples: readonly Sample[]): number | null {
  const end = samples.at(-1)?.t ?? 0;
  const half = samples.filter((s) => s.t >= end / 2);
  if (half.length < 3) return null;
  const xs = half.map((s) => s.t / 60_000);
  const ys = half.map((s) => mb(s.stats.rss));
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  const num = xs.reduce((a, x, i) => a + (x - mx) * (ys[i]! - my), 0);
  const den = xs.reduce((a, x) => a + (x - mx) ** 2, 0);
  return den === 0 ? null : num / den;
}

export function sparkline(values: readonly number[]): string {
  const bars = '▁▂▃▄▅▆▇█';
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  return values.map((v) => bars[hi === lo ? 0 : Math.round(((v - lo) / (hi - lo)) * (bars.length - 1))]).join('');
}

/** Resource types (and fds, connections) that are above the baseline. */
export function leaks(baseline: HarnessStats, final: HarnessStats): string[] {
  const out: string[] = [];
  if (final.openFds > baseline.openFds) out.push(`open fds ${baseline.openFds} → ${final.openFds}`);
  if (final.openConnections > baseline.openConnections) out.push(`open connections ${baseline.openConnections} → ${final.openConnections}`);
  const types = new Set([...Object.keys(baseline.activeResources), ...Object.keys(final.activeResources)]);
  for (const type of types) {
    const before = baseline.activeResources[type] ?? 0;
    const after = final.activeResources[type] ?? 0;
    if (after > before) out.push(`${type} ${before} → ${after}`);
  }
  return out;
}

function failureLine(f: Failure, start: number): string {
  return `+${fmt((f.startedAt - start) / 1000)} s ${f.kind} (${f.endedAt - f.startedAt} ms): ${f.detail}`;
}

export function checksOf(run: SoakRun): Check[] {
  const { tally } = run;
  const outside = tally.goodFailures.filter((f) => !tally.reloadAround(f.startedAt));
  const inside = tally.goodFailures.length - outside.length;
  const goodTotal = [...tally.good.values()].reduce((n, c) => n + c.ok + c.failed, 0);
  const badWrong = [...tally.bad.values()].reduce((n, c) => n + c.wrong, 0);
  const badTotal = [...tally.bad.values()].reduce((n, c) => n + c.refused + c.wrong, 0);
  const reloadsFailed = tally.reloads.filter((r) => !r.ok);
  const flat = flatness(minuteRows(run.samples), run.minutes, run.samples);
  const leaked = run.baseline && run.final ? leaks(run.baseline, run.final) : ['no figures'];
  return [
    { name: 'no good-client request failed outside a reload window', ok: outside.length === 0, detail: `${goodTotal} requests, ${outside.length} failed outside and ${inside} within ±${reloadWindowMs / 1000} s of a reload` },
    { name: 'every bad client got its documented refusal, in bounded time', ok: badWrong === 0 && badTotal > 0, detail: `${badTotal} bad clients, ${badWrong} got something else` },
    { name: 'every reload was applied and did its work', ok: reloadsFailed.length === 0 && tally.reloads.length > 0, detail: `${tally.reloads.length} reloads, ${reloadsFailed.length} failed${reloadsFailed[0] ? `: ${reloadsFailed[0].error}` : ''}` },
    {
      name: 'RSS flat over the second half (last minute within 5 % of the middle one, trend at most +0.5 MB/min)',
      ok: flat?.flat !== false,
      detail: flat
        ? `${fmt(flat.referenceMb)} MB → ${fmt(flat.lastMb)} MB (${flat.changePct >= 0 ? '+' : ''}${fmt(flat.changePct)} %), trend ${flat.slopeMbPerMin === null ? '?' : `${flat.slopeMbPerMin >= 0 ? '+' : ''}${fmt(flat.slopeMbPerMin, 2)}`} MB/min${flat.flat === null ? '; not judged: shorter than 6 minutes' : ''}`
        : 'not judged: too few samples',
    },
    { name: 'fds, active resources and connections back to the baseline', ok: leaked.length === 0, detail: leaked.length === 0 ? `within ${fmt(run.settledAfterMs / 1000)} s of the traffic stopping` : `still above after ${fmt(run.settledAfterMs / 1000)} s: ${leaked.join(', ')}` },
    { name: 'the proxy never crashed and stopped cleanly', ok: run.crashed === null, detail: run.crashed ?? 'exit code 0 after stop' },
    { name: 'no error-level line in the proxy log', ok: run.logErrors.length === 0, detail: run.logErrors.length === 0 ? 'none' : `${run.logErrors.length}, first: ${run.logErrors[0]!.slice(0, 300)}` },
  ];
}

/** The Markdown summary (also what the terminal shows). */
export function render(run: SoakRun, checks: readonly Check[]): string {
  const { tally } = run;
  const start = run.startedAt.getTime();
  const rows = minuteRows(run.samples);
  const flat = flatness(rows, run.minutes, run.samples);
  const allRss = run.samples.map((s) => mb(s.stats.rss));
  const out: string[] = [];
  const ok = checks.every((c) => c.ok);
  out.push(`#### ${run.startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC, Node ${run.node}, ${run.minutes} min: ${ok ? 'PASS' : 'FAIL'}`, '');
  out.push(`- Command: \`${run.command}\``);
  out.push(`- Machine: ${run.machine}`);
  out.push(`- Duration: ${run.minutes} min of measured traffic after a ${run.warmupSeconds} s warm-up (counts below include the warm-up); a reload every ${run.reloadEverySeconds} s (${tally.reloads.length} in all, alternating two configs that differ in a route and the api site's certificate)`);
  out.push(`- CPU (mean over the run, % of one core): proxy ${fmt(run.cpu.harnessPct)} %, load generator + upstream ${fmt(run.cpu.generatorPct)} %`, '');

  out.push('| check | result | detail |', '|---|---|---|');
  for (const c of checks) out.push(`| ${c.name} | ${c.ok ? 'pass' : '**FAIL**'} | ${c.detail.replace(/\|/g, '\\|')} |`);
  out.push('');

  out.push('**Good clients** (status, body and HSTS checked on every request)', '', '| kind | requests | failed | of which within ±1 s of a reload |', '|---|---:|---:|---:|');
  for (const [kind, c] of [...tally.good].sort(([a], [b]) => a.localeCompare(b))) {
    const failures = tally.goodFailures.filter((f) => f.kind === kind);
    out.push(`| ${kind} | ${c.ok + c.failed} | ${c.failed} | ${failures.filter((f) => tally.reloadAround(f.startedAt)).length} |`);
  }
  out.push('');
  out.push('**Bad clients** (each bounded; "max ms" is connect to refusal)', '', '| kind → documented refusal | attempts | refused as documented | other | mean ms | max ms |', '|---|---:|---:|---:|---:|---:|');
  for (const [kind, c] of [...tally.bad].sort(([a], [b]) => a.localeCompare(b))) {
    const n = c.refused + c.wrong;
    out.push(`| ${kind} | ${n} | ${c.refused} | ${c.wrong} | ${fmt(c.totalMs / Math.max(1, n), 0)} | ${c.maxMs} |`);
  }
  out.push('');

  if (rows.length > 0) {
    out.push(`**Proxy RSS**, sampled every 5 s (${run.samples.length} samples): ${sparkline(rows.map((r) => r.meanMb))} (per-minute means), overall max ${fmt(Math.max(...allRss))} MB.`);
    if (flat) out.push(`Minute 1 mean ${fmt(rows[0]!.meanMb)} MB; middle minute (reference) ${fmt(flat.referenceMb)} MB; last minute ${fmt(flat.lastMb)} MB (${flat.changePct >= 0 ? '+' : ''}${fmt(flat.changePct)} %).`);
    if (flat?.slopeMbPerMin != null) out.push(`Trend over the second half of the run (least squares): ${flat.slopeMbPerMin >= 0 ? '+' : ''}${fmt(flat.slopeMbPerMin, 2)} MB/min.`);
    out.push('', '| minute | samples | mean RSS MB | max RSS MB | mean heapUsed MB | mean external MB |', '|---:|---:|---:|---:|---:|---:|');
    for (const r of rows) out.push(`| ${r.minute} | ${r.samples} | ${fmt(r.meanMb)} | ${fmt(r.maxMb)} | ${fmt(r.heapMeanMb)} | ${fmt(r.externalMeanMb)} |`);
    out.push('');
  }

  if (run.baseline && run.final) {
    const b = run.baseline;
    const f = run.final;
    const types = [...new Set([...Object.keys(b.activeResources), ...Object.keys(f.activeResources)])].sort();
    out.push(`**Handles** in the proxy process: after warm-up (idle) vs ${fmt(run.settledAfterMs / 1000)} s after the traffic stopped`, '', '| | after warm-up | after the run |', '|---|---:|---:|');
    out.push(`| open fds | ${b.openFds} | ${f.openFds} |`, `| open connections (proxy's count) | ${b.openConnections} | ${f.openConnections} |`);
    for (const t of types) out.push(`| ${t} | ${b.activeResources[t] ?? 0} | ${f.activeResources[t] ?? 0} |`);
    out.push(`| upstream connections (upstream's count) | ${run.upstreamConnections.baseline} | ${run.upstreamConnections.final} |`);
    if (run.heapAfterGc) out.push(`| heapUsed after GC, MB | ${fmt(run.heapAfterGc.baseline)} | ${fmt(run.heapAfterGc.final)} |`);
    out.push('');
  }

  const counters = [...tally.counters].sort(([a], [b]) => a.localeCompare(b));
  if (counters.length) {
    out.push('**Connections of the good clients** (a reload that dropped connections would show as sessions ended by the server and extra keep-alive connections)', '');
    for (const [name, n] of counters) out.push(`- ${name}: ${n}`);
    out.push('');
  }
  out.push('**Reloads**: ' + tally.reloads.map((r) => `${r.variant.toUpperCase()} ${r.endedAt - r.startedAt} ms${r.ok ? '' : ` FAILED (${r.error})`}`).join(', '), '');

  const events = [...run.logEvents].sort(([, a], [, b]) => b - a);
  out.push(`**Proxy log**: ${events.map(([e, n]) => `${e} ${n}`).join(', ')}.`, '');
  out.push(
    `**Access log**: ${run.access.lines} lines; by status ${[...run.access.byStatus].sort().map(([s, n]) => `${s}: ${n}`).join(', ')}; incomplete (completed: false) by reason ${[...run.access.incomplete].map(([r, n]) => `${r}: ${n}`).join(', ') || 'none'}.`,
    '',
  );

  if (tally.goodFailures.length > 0) {
    out.push('**Good-client failures** (first 30):', '', '```');
    for (const f of tally.goodFailures.slice(0, 30)) out.push(`${failureLine(f, start)}${tally.reloadAround(f.startedAt) ? '  [reload window]' : ''}`);
    out.push('```', '');
  }
  if (tally.badFailures.length > 0) {
    out.push('**Bad clients that got something else** (first 30):', '', '```');
    for (const f of tally.badFailures.slice(0, 30)) out.push(failureLine(f, start));
    out.push('```', '');
  }
  if (run.logErrors.length > 0) {
    out.push('**Error-level proxy log lines** (first 10):', '', '```');
    for (const l of run.logErrors.slice(0, 10)) out.push(l.slice(0, 600));
    out.push('```', '');
  }
  return out.join('\n');
}
