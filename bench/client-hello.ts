// Cost of what the edge does with every ClientHello before any TLS work:
// parse it, and summarize it once per connection: JA4, JA3 and its weakness,
// which the connection events carry.
// Run: node --import tsx bench/client-hello.ts
import { parseClientHello } from '../src/edge/client-hello.js';
import type { Socket } from 'node:net';
import { ja3, ja4, summarizeHello } from '../src/edge/fingerprints.js';
import { weakOfferOf } from '../src/edge/weak-offer.js';
import { captureHello } from '../test/helpers/capture-hello.js';

const hello = await captureHello(['-servername', 'api.test', '-alpn', 'h2,http/1.1']);
const rounds = 200_000;
const time = (label: string, fn: () => void) => {
  for (let i = 0; i < 10_000; i++) fn();
  const start = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) fn();
  const ns = Number(process.hrtime.bigint() - start) / rounds;
  process.stdout.write(`${label.padEnd(28)} ${(ns / 1000).toFixed(2)} µs per ClientHello (${hello.length} bytes)\n`);
};
const parsed = parseClientHello(hello);
if (parsed.kind !== 'hello') throw new Error(`the captured ClientHello did not parse: ${parsed.kind}`);
time('parse', () => parseClientHello(hello));
time('ja4', () => ja4(parsed.hello));
time('ja3', () => ja3(parsed.hello));
const socket = {} as Socket;
time('weakness', () => weakOfferOf(parsed.hello));
time('parse + summary (per conn.)', () => {
  const r = parseClientHello(hello);
  if (r.kind === 'hello') summarizeHello(socket, r.hello, 0);
});
