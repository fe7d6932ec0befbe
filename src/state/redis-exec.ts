/**
 * The results of a Redis transaction (ioredis `multi().….exec()`), or the
 * first error in it: a command that failed inside a MULTI surfaces as a
 * rejection, never as a silently missing value.
 */
export async function execAll(multi: { exec(): Promise<[Error | null, unknown][] | null> }): Promise<unknown[]> {
  const results = await multi.exec();
  if (results === null) throw new Error('the Redis transaction was discarded');
  for (const [err] of results) if (err) throw err;
  return results.map(([, value]) => value);
}
