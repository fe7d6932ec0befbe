import fc from 'fast-check';
import { after, before, describe, test } from 'node:test';
import { seedOf, type PropertySuite } from './harness.js';

/**
 * Registers a property suite with node:test: one test per property, the
 * suite's context opened before and closed after. The seed is fixed per
 * property so the default test run is repeatable; PCL_PROPERTY_SEED=<n>
 * replays another one, PCL_PROPERTY_SEED=random explores.
 */
export function describeProperties<C>(suite: PropertySuite<C>): void {
  const override = process.env.PCL_PROPERTY_SEED;
  describe(suite.title, () => {
    let ctx: C | undefined;
    let opened = false;
    before(async () => {
      ctx = await suite.open();
      opened = true;
    });
    after(async () => {
      if (opened) await suite.close(ctx as C);
    });
    for (const c of suite.cases) {
      const seed = override === 'random' ? Date.now() : override ? Number(override) : seedOf(c.name);
      test(c.name, c.knownDefect ? { todo: c.knownDefect } : {}, async () => {
        await fc.assert(c.property(ctx as C), { numRuns: c.runs, seed });
      });
    }
  });
}
