// Reading a process's memory from /proc, for the memory benchmarks (bench/idle-rss.ts,
// bench/stream-rss.ts): resident set of a process and its children, read once it settles.
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer().once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => res(port));
    });
  });
}

/** VmRSS of `pid` and its direct children together, and how many processes that was. */
export function rssKb(pid: number): { kb: number; processes: number } {
  const pids = [pid];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) pids.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  let kb = 0;
  for (const p of pids) kb += Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0);
  return { kb, processes: pids.length };
}

/** `rssKb` once two readings 1 s apart differ by less than 1 % (the last one after 30 s, said through `log`). */
export async function settledRssKb(pid: number, log: (msg: string) => void): Promise<{ kb: number; processes: number }> {
  let prev = rssKb(pid);
  for (let s = 0; s < 30; s++) {
    await sleep(1000);
    const cur = rssKb(pid);
    if (Math.abs(cur.kb - prev.kb) < 0.01 * prev.kb) return cur;
    prev = cur;
  }
  log('RSS did not settle within 30 s; taking the last reading');
  return prev;
}
