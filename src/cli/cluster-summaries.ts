import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { loadConfigFile } from '../config/index.js';
import { createLogger } from '../observe/index.js';
import { RedisLink } from '../state/index.js';
import { clusterSummaryTexts, requestSummaryFlush, type SummaryKind } from '../telemetry/index.js';

/** Whether the config asks for the redis backend, read without validating the rest (as the dataDir is): a memory config is never loaded strictly here. */
function namesRedis(file: string): boolean {
  try {
    const raw = YAML.parse(readFileSync(file, 'utf8'), { maxAliasCount: 50 }) as { state?: { backend?: unknown } } | null;
    return raw?.state?.backend === 'redis';
  } catch {
    return false;
  }
}

const warn = (text: string) => process.stderr.write(`portcullis: ${text}\n`);

/**
 * With `state.backend: redis`, the other instances' summaries of `kind` (the
 * texts of their copies in the cluster's Redis), after asking every instance
 * to write its copy now; [] with the memory backend. A report aid: when the
 * config does not load or Redis does not answer, says so on stderr and
 * returns [] (the report shows this dataDir's summaries only).
 */
export async function otherInstancesSummaries(configFile: string | undefined, dataDir: string, kind: SummaryKind): Promise<string[]> {
  if (configFile === undefined || !namesRedis(configFile)) return [];
  let link: RedisLink;
  try {
    const state = loadConfigFile(configFile).state;
    if (state.backend !== 'redis') return [];
    link = await RedisLink.open(state.redis, createLogger('silent'));
  } catch (err) {
    warn(`${(err as Error).message.split('\n')[0]}; showing the summaries of dataDir ${dataDir} only, not the cluster's`);
    return [];
  }
  try {
    const { answered, asked } = await requestSummaryFlush(link);
    if (answered < asked) warn(`${asked - answered} of ${asked} running process(es) did not write their summaries within 3 s; theirs are as of their last flush (once a minute)`);
    return await clusterSummaryTexts(link, kind, dataDir);
  } catch (err) {
    warn(`the cluster's summaries could not be read from ${link.settings.display} (${(err as Error).message}); showing the summaries of dataDir ${dataDir} only`);
    return [];
  } finally {
    await link.close();
  }
}
