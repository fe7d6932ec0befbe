import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { PortcullisError } from '../../src/errors.js';
import { controlSocketFile } from '../../src/state/index.js';
import { openControlSocket, type ControlHandlers } from '../../src/supervisor/control-socket.js';
import type { ReloadResult } from '../../src/supervisor/reloader.js';
import { propertyCase, within, type PropertySuite } from './harness.js';

/**
 * Control socket properties: a real socket on a temp dataDir, with handlers
 * that record their calls. Whatever arrives, the socket answers one JSON
 * line or hangs up, runs a handler only for an exact command name (and hands
 * it only a well-formed change), and keeps serving. Written about malformed
 * input in general: the exact usage messages, the payload fields and the
 * length limit are the protocol's to change.
 */

const commands = { reload: 'reload', 'deny-list': 'denyList', 'api-keys': 'apiKeys', flush: 'flush', status: 'status' } as const;
type Command = keyof typeof commands;
type Handler = (typeof commands)[Command];

interface Call {
  readonly handler: Handler;
  readonly change: unknown;
}

interface ControlContext {
  readonly dir: string;
  readonly path: string;
  readonly calls: Call[];
  close(): Promise<void>;
}

/** Requests up to this size are read whole (the socket's limit is larger); longer ones may be refused as too long. */
const surelyReadBytes = 4096;

/** Sends `chunks` on one connection and returns what came back before the socket closed. */
function exchange(path: string, chunks: readonly Buffer[]): Promise<string> {
  return within(
    8000,
    'a control socket exchange',
    new Promise<string>((resolve) => {
      const socket = connect(path);
      let answer = '';
      socket.on('data', (d: Buffer) => (answer += d.toString()));
      socket.on('error', () => {});
      socket.on('close', () => resolve(answer));
      socket.on('connect', async () => {
        for (const chunk of chunks) {
          if (socket.destroyed) return;
          await new Promise<void>((done) => socket.write(chunk, () => done()));
          await new Promise((r) => setImmediate(r));
        }
        // without a line there is nothing to answer: half-close so the socket hangs up; with one, wait for the answer
        if (!Buffer.concat(chunks).includes(0x0a)) socket.end();
      });
    }),
  );
}

type Expected = { kind: 'no-line' } | { kind: 'usage' } | { kind: 'command'; command: Command; bare: boolean };

/** What the socket must do with `bytes`, decided from its first line. */
function expected(bytes: Buffer): Expected {
  const end = bytes.indexOf(0x0a);
  if (end < 0) return { kind: 'no-line' };
  let request: unknown;
  try {
    request = JSON.parse(bytes.subarray(0, end).toString());
  } catch {
    return { kind: 'usage' };
  }
  const fields = request !== null && typeof request === 'object' && !Array.isArray(request) ? (request as Record<string, unknown>) : null;
  const command = fields && Object.hasOwn(fields, 'command') ? fields.command : undefined;
  if (typeof command === 'string' && Object.hasOwn(commands, command)) return { kind: 'command', command: command as Command, bare: Object.keys(fields as object).length === 1 };
  return { kind: 'usage' };
}

interface Answer {
  readonly ok: boolean;
  readonly code?: string;
  readonly message: string;
}

function parseAnswer(text: string): Answer | null {
  if (text === '') return null;
  assert.ok(text.endsWith('\n') && text.indexOf('\n') === text.length - 1, `not one line: ${JSON.stringify(text.slice(0, 200))}`);
  const answer = JSON.parse(text) as Answer;
  assert.equal(typeof answer.ok, 'boolean');
  assert.ok(typeof answer.message === 'string' && answer.message.length > 0, 'an answer says something');
  return answer;
}

const isUsage = (a: Answer) => a.ok === false && a.code === 'PCL_CLI_USAGE';

const handlerAnswer = (handler: Handler): ReloadResult => (handler === 'denyList' ? { ok: false, code: 'PCL_DENY_LIST_INVALID', message: 'deny-list refused' } : { ok: true, message: `${handler} done` });

/**
 * Checks one exchange against the model; returns the handler it must have
 * run ('maybe': a request the socket may take or refuse).
 */
function checkAnswer(bytes: Buffer, text: string): { must: Handler | null; may: Handler | null } {
  const want = expected(bytes);
  const answer = parseAnswer(text);
  const long = bytes.length > surelyReadBytes;
  if (answer === null) {
    // hang-up: there was no line, or it was too long to read
    assert.ok(want.kind === 'no-line' || long, `no answer to a request (${want.kind})`);
    return { must: null, may: null };
  }
  if (want.kind === 'no-line') {
    assert.ok(isUsage(answer), 'a flight without a line is refused as usage, if answered at all');
    return { must: null, may: null };
  }
  if (want.kind === 'usage') {
    assert.ok(isUsage(answer), `a request that is no command got ${JSON.stringify(answer)}`);
    return { must: null, may: null };
  }
  const handler = commands[want.command];
  if (isUsage(answer)) {
    // only fields beside the command (or a request too long) may make an exact command a usage error
    assert.ok(!want.bare || long, `the bare command ${want.command} was refused: ${answer.message}`);
    return { must: null, may: null };
  }
  assert.deepEqual(answer, handlerAnswer(handler));
  return { must: handler, may: null };
}

function checkCalls(calls: readonly Call[], must: readonly Handler[]): void {
  assert.deepEqual(calls.map((c) => c.handler).sort(), [...must].sort(), 'the handlers run are those of the exact commands answered');
  for (const c of calls) checkChange(c);
}

/** A handler gets no change, or a well-formed one: a normalised deny entry or key revocation. */
function checkChange({ handler, change }: Call): void {
  if (change === null || change === undefined) return;
  assert.ok(handler === 'denyList' || handler === 'apiKeys', `${handler} got a change`);
  const iso = (v: unknown) => typeof v === 'string' && new Date(v).toISOString() === v;
  if (handler === 'denyList') {
    const deny = (change as { deny: Record<string, unknown> }).deny;
    assert.deepEqual(Object.keys(change as object), ['deny']);
    assert.ok(iso(deny.addedAt), 'addedAt normalised to ISO');
    assert.ok(deny.note === null || (typeof deny.note === 'string' && deny.note.length <= 1024));
    if ('fingerprint' in deny) assert.match(String(deny.fingerprint), /^sha256:([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    else {
      assert.match(String(deny.serial), /^[0-9A-F]+$/);
      assert.match(String(deny.issuer), /^[A-Za-z0-9.]+\s*=/);
    }
  } else {
    const revoke = (change as { revoke: Record<string, unknown> }).revoke;
    assert.deepEqual(Object.keys(change as object), ['revoke']);
    assert.match(String(revoke.id), /^[0-9a-f]{12}$/);
    assert.ok(iso(revoke.at));
  }
}

const commandNames = Object.keys(commands) as Command[];

/** Command names and their look-alikes. */
const nearCommand = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...commandNames) },
  { weight: 1, arbitrary: fc.constantFrom('Reload', 'reload ', ' reload', 'RELOAD', 'deny_list', 'denyList', 'apiKeys', 'toString', '__proto__', 'constructor', 'hasOwnProperty', 'valueOf', '', 'flush\u0000', 'reloa') },
  { weight: 1, arbitrary: fc.string({ maxLength: 10 }) },
);

const isoTime = fc.date({ min: new Date('1970-01-01T00:00:00Z'), max: new Date('2100-01-01T00:00:00Z'), noInvalidDate: true }).map((d) => d.toISOString());
const hex64 = fc.stringMatching(/^[0-9a-fA-F]{64}$/);
const junk = fc.oneof(fc.string({ maxLength: 20 }), fc.integer(), fc.constant(null), fc.constantFrom('', ':', '0x', 'zz', '=x', '2025', 'yesterday', '+275760-09-13T00:00:00.000Z', '2025-02-30T00:00:00Z'), fc.integer({ min: 1000, max: 1100 }).map((n) => 'n'.repeat(n)), fc.jsonValue({ maxDepth: 1 }));

/** `valid` with at most a few fields replaced by junk, removed, or added: mostly one step from the documented shape. */
function nearShape(valid: fc.Arbitrary<Record<string, unknown>>, fields: readonly string[]): fc.Arbitrary<Record<string, unknown>> {
  const edit = fc.record({ field: fc.constantFrom(...fields, 'removed', 'extra'), op: fc.constantFrom('junk', 'drop'), value: junk });
  return fc.tuple(valid, fc.array(edit, { maxLength: 2 })).map(([entry, edits]) => {
    const out: Record<string, unknown> = { ...entry };
    for (const e of edits) {
      if (e.op === 'drop') delete out[e.field];
      else out[e.field] = e.value;
    }
    return out;
  });
}

const denyEntryArb = nearShape(
  fc.oneof(
    fc.record({ fingerprint: fc.oneof(hex64.map((h) => `sha256:${h}`), hex64.map((h) => `SHA256:${h.match(/../g)!.join(':')}`)), note: fc.option(fc.string({ maxLength: 30 }), { nil: null }), addedAt: isoTime }),
    fc.record({ serial: fc.stringMatching(/^(0x)?[0-9a-fA-F:]{1,20}$/), issuer: fc.constantFrom('CN=Clients CA,O=Example', ' CN = x ', 'O=a'), note: fc.option(fc.string({ maxLength: 30 }), { nil: null }), addedAt: fc.oneof(isoTime, fc.constant('2025-01-02T03:04:05Z')) }),
  ),
  ['fingerprint', 'serial', 'issuer', 'note', 'addedAt'],
);
const revokeArb = nearShape(fc.record({ id: fc.stringMatching(/^[0-9a-f]{12}$/), at: isoTime }), ['id', 'at']);

const requestObject = fc.oneof(
  { weight: 2, arbitrary: nearCommand.map((command) => ({ command })) },
  { weight: 2, arbitrary: denyEntryArb.map((deny) => ({ command: 'deny-list', unpersisted: { deny } })) },
  { weight: 2, arbitrary: revokeArb.map((revoke) => ({ command: 'api-keys', unpersisted: { revoke } })) },
  { weight: 1, arbitrary: fc.tuple(nearCommand, fc.oneof(denyEntryArb.map((deny) => ({ deny })), revokeArb.map((revoke) => ({ revoke })), fc.jsonValue({ maxDepth: 2 }))).map(([command, u]) => ({ command, unpersisted: u })) },
  { weight: 1, arbitrary: fc.tuple(nearCommand, fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 })).map(([command, extra]) => ({ ...extra, command })) },
  { weight: 1, arbitrary: fc.record({ command: fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.array(fc.constantFrom(...commandNames))) }) },
  { weight: 1, arbitrary: fc.oneof(fc.record({ commands: fc.constantFrom(...commandNames) }), fc.jsonValue({ maxDepth: 3 })) },
);

const garbage = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
  fc.string({ maxLength: 100 }).map((s) => Buffer.from(s)),
  fc.integer({ min: surelyReadBytes - 10, max: 200_000 }).map((n) => Buffer.alloc(n, 'a')),
);

/** A first flight: JSON (compact, spaced, with a BOM, a \\r, data after it), huge lines, random bytes, with or without a newline. */
const flight: fc.Arbitrary<Buffer> = fc
  .tuple(
    fc.oneof(
      { weight: 4, arbitrary: requestObject.map((r) => Buffer.from(JSON.stringify(r))) },
      { weight: 1, arbitrary: requestObject.map((r) => Buffer.from(` \t${JSON.stringify(r, null, 1).replace(/\n/g, ' ')}\r`)) },
      { weight: 1, arbitrary: requestObject.map((r) => Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify(r))])) },
      { weight: 2, arbitrary: garbage },
    ),
    fc.constantFrom('\n', '\n', '\r\n', '', '\n{"command":"reload"}\n'),
    fc.oneof({ weight: 4, arbitrary: fc.constant(Buffer.alloc(0)) }, { weight: 1, arbitrary: garbage }),
  )
  .map(([body, end, after]) => Buffer.concat([body, Buffer.from(end), after]));

/** Cut points for writing a flight in pieces (a command split across writes is still one request). */
const cuts = fc.array(fc.nat(), { maxLength: 4 });
function split(bytes: Buffer, at: readonly number[]): Buffer[] {
  const points = [...new Set([0, ...at.map((c) => c % (bytes.length + 1))])].sort((a, b) => a - b);
  return points.map((p, i) => bytes.subarray(p, points[i + 1] ?? bytes.length)).filter((b) => b.length > 0);
}

async function stillServes(ctx: ControlContext): Promise<void> {
  ctx.calls.length = 0;
  const answer = parseAnswer(await exchange(ctx.path, [Buffer.from('{"command":"flush"}\n')]));
  assert.deepEqual(answer, handlerAnswer('flush'), 'a valid request is still served');
  assert.deepEqual(ctx.calls, [{ handler: 'flush', change: null }]);
}

/** Handlers that record their calls; deny-list fails, as a broken list file would. */
function recordingHandlers(calls: Call[]): ControlHandlers {
  const record = (handler: Handler, change: unknown = null) => calls.push({ handler, change });
  return {
    reload: async () => (record('reload'), handlerAnswer('reload')),
    denyList: async (change) => {
      record('denyList', change);
      throw new PortcullisError('PCL_DENY_LIST_INVALID', 'deny-list refused');
    },
    apiKeys: async (change) => (record('apiKeys', change), handlerAnswer('apiKeys')),
    flush: async () => (record('flush'), handlerAnswer('flush')),
    status: async () => (record('status'), handlerAnswer('status')),
  };
}

export const controlSocketProperties: PropertySuite<ControlContext> = {
  target: 'control-socket',
  title: 'control socket (properties)',
  async open() {
    const dir = mkdtempSync(join(tmpdir(), 'pcl-control-fuzz-'));
    const calls: Call[] = [];
    const server = await openControlSocket(dir, recordingHandlers(calls));
    return { dir, path: controlSocketFile(dir), calls, close: server.close };
  },
  async close(ctx) {
    await ctx.close();
    rmSync(ctx.dir, { recursive: true, force: true });
  },
  cases: [
    propertyCase('any first flight, whole or in pieces, is answered with one JSON line (a usage error, or the handler of an exact command) or a hang-up, and the socket keeps serving', 500, (ctx) =>
      fc.asyncProperty(flight, cuts, async (bytes, at) => {
        ctx.calls.length = 0;
        const text = await exchange(ctx.path, split(bytes, at));
        const { must } = checkAnswer(bytes, text);
        checkCalls(ctx.calls, must ? [must] : []);
        await stillServes(ctx);
      }),
    ),
    propertyCase('many connections at once, each with any flight, get their own answers and run only the handlers of their exact commands', 40, (ctx) =>
      fc.asyncProperty(fc.array(flight, { minLength: 1, maxLength: 40 }), async (flights) => {
        ctx.calls.length = 0;
        const texts = await Promise.all(flights.map((f) => exchange(ctx.path, [f])));
        const must = flights.flatMap((f, i) => checkAnswer(f, texts[i] as string).must ?? []);
        checkCalls(ctx.calls, must);
        await stillServes(ctx);
      }),
    ),
  ],
};
