import fc from 'fast-check';

/**
 * The property tests of the hardening work, declared once and run two ways:
 * by `test/unit/*-property.test.ts` with a small number of runs and a seed
 * fixed per property (the default test command), and by `scripts/fuzz.ts`
 * with random seeds for as long as it is given. Nothing here imports
 * node:test, so the fuzz script runs outside the test runner.
 */

/** One property: a sentence naming the behaviour, and a factory for a fresh fast-check property over the suite's context. */
export interface PropertyCase<C> {
  readonly name: string;
  /** numRuns of the default test run: enough to catch a regression in a few seconds. */
  readonly runs: number;
  readonly property: (ctx: C) => fc.IRawProperty<never>;
  /** A known defect this property shows, until it is fixed: the default test run reports it as TODO instead of failing. */
  readonly knownDefect?: string;
}

/** The properties of one area, with whatever they need running (servers, temp folders) as their context. */
export interface PropertySuite<C> {
  /** Short name for `scripts/fuzz.ts --target`. */
  readonly target: string;
  readonly title: string;
  readonly cases: readonly PropertyCase<C>[];
  /** Starts what the properties need. */
  open(): Promise<C>;
  close(ctx: C): Promise<void>;
}

/** A property case; the value types of the property are erased so cases of any types share one list. */
export function propertyCase<C, Ts extends [unknown, ...unknown[]]>(
  name: string,
  runs: number,
  property: (ctx: C) => fc.IRawProperty<Ts>,
  knownDefect?: string,
): PropertyCase<C> {
  return { name, runs, property: property as unknown as (ctx: C) => fc.IRawProperty<never>, ...(knownDefect ? { knownDefect } : {}) };
}

/** A stable seed per property name, so the default test run checks the same cases every time. */
export function seedOf(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h | 0;
}

/**
 * A counterexample as text for a fuzz report: byte arrays as hex (the form to
 * paste into a regression test), strings JSON-quoted, the rest via fast-check.
 */
export function describeInput(value: unknown): string {
  const seen = new Set<unknown>();
  const walk = (v: unknown): string => {
    if (v instanceof Uint8Array) return `hex:${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}`;
    if (typeof v === 'string') return JSON.stringify(v);
    if (v === null || typeof v !== 'object') return fc.stringify(v);
    if (seen.has(v)) return '[circular]';
    seen.add(v);
    if (Array.isArray(v)) return `[${v.map(walk).join(', ')}]`;
    if (Object.getPrototypeOf(v) !== Object.prototype) return fc.stringify(v);
    return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${walk(x)}`).join(', ')}}`;
  };
  return walk(value);
}

/** Resolves within `ms` or rejects naming `what`: a property that hangs fails instead. */
export async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} took more than ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
