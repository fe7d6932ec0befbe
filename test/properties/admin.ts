import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate, createPublicKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import fc from 'fast-check';
import { pino } from 'pino';
import { AdminListener } from '../../src/admin/index.js';
import { tlsProfiles } from '../../src/config/index.js';
import { reasonCatalog } from '../../src/errors.js';
import { CaStore, requestedPublicKey, x509 } from '../../src/pki/index.js';
import { SupervisorMetrics } from '../../src/observe/index.js';
import { identityOf } from '../../src/trust/index.js';
import { untilPast } from '../helpers/wait.js';
import { propertyCase, within, type PropertySuite } from './harness.js';

/**
 * Admin API input properties, against the real admin listener (HTTPS, the
 * built-in CA, the admin token under dataDir): any method, path, headers and
 * body get the answer a model of the endpoint predicts, never a 500; an
 * invalid certificate request never spends an enrollment token.
 */

interface AdminContext {
  readonly dir: string;
  readonly listener: AdminListener;
  readonly port: number;
  readonly agent: Agent;
  readonly ca: Buffer;
  readonly adminToken: string;
  /** A second handle on the CA database, as `portcullis ca enroll-token` has. */
  readonly store: CaStore;
  readonly csr: { readonly pem: Buffer; readonly der: Buffer; readonly key: Buffer; readonly weak: Buffer };
  readonly tokens: { live: string; liveId: string; spent: string; expired: string };
  /** Log lines of level error (an internal error of the listener would be one). */
  readonly errors: string[];
}

const metricsText = '# portcullis test metrics\nportcullis_up 1\n';
const maxCsrBytes = 16 * 1024;

interface Reply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
}

interface AdminRequest {
  readonly method: string;
  readonly path: string;
  readonly authorization: string | undefined;
  readonly contentType: string | undefined;
  readonly body: Buffer;
}

export function send(ctx: AdminContext, r: AdminRequest): Promise<Reply> {
  return within(
    10_000,
    `${r.method} ${r.path}`,
    new Promise<Reply>((resolve, reject) => {
      const headers: Record<string, string> = {};
      if (r.authorization !== undefined) headers.authorization = r.authorization;
      if (r.contentType !== undefined) headers['content-type'] = r.contentType;
      if (r.body.length > 0 || r.method === 'POST') headers['content-length'] = String(r.body.length);
      const req = request({ host: '127.0.0.1', port: ctx.port, servername: 'localhost', ca: ctx.ca, agent: ctx.agent, method: r.method, path: r.path, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(r.body);
    }),
  );
}

type Outcome = { status: 200; kind: 'metrics' | 'certificate' } | { status: number; reasons: readonly string[] };

/** What the listener answers, by its documented behaviour. `csrValid`: the body is the CSR of the test key, as generated. */
function model(ctx: AdminContext, r: AdminRequest, csrValid: boolean): Outcome {
  const path = r.path.split('?')[0];
  // Node strips the spaces and tabs around a field value
  const auth = r.authorization?.replace(/^[ \t]+|[ \t]+$/g, '');
  const bearer = /^Bearer (\S+)$/i.exec(auth ?? '')?.[1];
  const refuse = (...reasons: (keyof typeof reasonCatalog)[]) => ({ status: reasonCatalog[reasons[0] as keyof typeof reasonCatalog].status, reasons });
  if (path === '/v1/enroll') {
    if (r.method !== 'POST') return refuse('method_not_allowed');
    if (r.body.length > maxCsrBytes) return refuse('body_too_large');
    if (bearer === undefined) return refuse('unknown_enrollment_token');
    if (!csrValid) return refuse('bad_csr', 'weak_csr_key');
    if (bearer === ctx.tokens.live) return { status: 200, kind: 'certificate' };
    if (bearer === ctx.tokens.spent) return refuse('used_enrollment_token');
    if (bearer === ctx.tokens.expired) return refuse('expired_enrollment_token');
    return refuse('unknown_enrollment_token');
  }
  if (bearer !== ctx.adminToken || auth !== `${/^bearer/i.exec(auth ?? '')?.[0]} ${ctx.adminToken}`) return refuse('admin_unauthorized');
  if (path === '/metrics' && (r.method === 'GET' || r.method === 'HEAD')) return { status: 200, kind: 'metrics' };
  return refuse('no_route');
}

function checkReply(ctx: AdminContext, r: AdminRequest, reply: Reply, want: Outcome): void {
  const what = `${r.method} ${r.path} (auth ${JSON.stringify(r.authorization?.slice(0, 40))}, ${r.body.length} bytes)`;
  assert.notEqual(reply.status, 500, `internal error for ${what}: ${ctx.errors.at(-1)}`);
  assert.equal(reply.status, want.status, `${what}: ${reply.body.toString().slice(0, 300)}`);
  assert.equal(reply.headers['cache-control'], 'no-store');
  assert.equal(reply.headers['strict-transport-security'], 'max-age=31536000');
  if ('kind' in want) {
    if (want.kind === 'metrics') assert.equal(reply.body.toString(), r.method === 'HEAD' ? '' : metricsText);
    return;
  }
  assert.equal(reply.headers['content-type'], 'application/json');
  if (r.method === 'HEAD') return;
  const body = JSON.parse(reply.body.toString()) as { error: string; reason: string; detail: string };
  assert.ok(want.reasons.includes(body.reason), `${what}: reason ${body.reason}, expected ${want.reasons.join(' or ')}`);
  assert.equal(reasonCatalog[body.reason as keyof typeof reasonCatalog].status, reply.status, 'the status is the reason\'s');
  assert.ok(body.detail.length > 0 && body.error.length > 0);
  if (body.reason === 'admin_unauthorized') assert.equal(reply.headers['www-authenticate'], 'Bearer realm="portcullis-admin"');
}

/** The certificate of a 200 enrollment certifies the key of the test CSR, chains to the CA, and the token is spent; otherwise the token is not. */
async function checkToken(ctx: AdminContext, reply: Reply): Promise<void> {
  const live = ctx.store.enrollments().find((e) => e.id === ctx.tokens.liveId);
  if (reply.status !== 200 || reply.headers['content-type'] !== 'application/pem-certificate-chain') {
    assert.equal(live?.usedAt, null, 'a refused enrollment left the token spent');
    return;
  }
  const leaf = new X509Certificate(reply.body);
  assert.ok(leaf.publicKey.equals(createPublicKey(ctx.csr.key)), 'the certificate is for the key the CSR proved');
  assert.ok(leaf.verify(new X509Certificate(readFileSync(ctx.store.ca.issuing.certFile)).publicKey));
  assert.ok(live?.usedAt, 'the token is spent once its certificate is handed out');
  // the next runs need a live token again
  await renewLiveToken(ctx);
}

async function renewLiveToken(ctx: AdminContext): Promise<void> {
  ctx.tokens.spent = ctx.tokens.live;
  const fresh = await ctx.store.createEnrollment({ commonName: 'fuzz', uris: ['spiffe://example.test/fuzz'], dns: [], lifetimeDays: 1, validForMs: 3_600_000 });
  ctx.tokens.live = fresh.token;
  ctx.tokens.liveId = fresh.record.id;
}

// ---- generators ------------------------------------------------------------

const printable = (extra = '') => fc.string({ unit: fc.constantFrom(...`abcxyzABCXYZ0189_-.~+/=:;,"'()[]{}<>@!#$%&*?|^\`${extra}`.split('')), maxLength: 40 });

/** Authorization values around the real tokens: exact, other scheme case, extra spaces, one character off, prefixes, other tokens, garbage. */
const authorization = (ctx: AdminContext) => {
  // read when generated: the live token changes once it is spent
  const token = fc.oneof(
    { weight: 3, arbitrary: fc.constant(null).map(() => ctx.tokens.live) },
    { weight: 2, arbitrary: fc.constant(ctx.adminToken) },
    { weight: 2, arbitrary: fc.constant(null).map(() => ctx.tokens.spent) },
    { weight: 1, arbitrary: fc.constantFrom(ctx.tokens.expired, `pce_${'0'.repeat(16)}_${'A'.repeat(43)}`, `pca_${'A'.repeat(43)}`, 'pce_nothing') },
  );
  const tweak = fc.oneof(
    { weight: 4, arbitrary: fc.constant((t: string) => t) },
    { weight: 1, arbitrary: fc.constantFrom((t: string) => t.slice(0, -1), (t: string) => `${t}x`, (t: string) => t.toUpperCase()) },
    { weight: 1, arbitrary: fc.nat().map((i) => (t: string) => `${t.slice(0, i % t.length)}${t[i % t.length] === 'A' ? 'B' : 'A'}${t.slice((i % t.length) + 1)}`) },
  );
  const scheme = fc.oneof({ weight: 4, arbitrary: fc.constantFrom('Bearer ', 'bearer ', 'BEARER ') }, { weight: 1, arbitrary: fc.constantFrom('Bearer  ', 'Bearer\t', 'Bearer', 'Basic ', 'Token ', 'Bearer: ', ' Bearer ') });
  const after = fc.oneof({ weight: 4, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constantFrom(' ', '\t', ' x', ',') });
  return fc.oneof(
    { weight: 8, arbitrary: fc.tuple(scheme, token, tweak, after).map(([s, t, f, a]) => `${s}${f(t)}${a}`) },
    { weight: 1, arbitrary: fc.oneof(printable(' \t'), fc.tuple(token, tweak).map(([t, f]) => f(t))) },
    { weight: 1, arbitrary: fc.constant(undefined) },
  );
};

const method = fc.oneof({ weight: 4, arbitrary: fc.constant('POST') }, { weight: 2, arbitrary: fc.constantFrom('GET', 'HEAD') }, { weight: 1, arbitrary: fc.constantFrom('PUT', 'DELETE', 'OPTIONS', 'PATCH', 'PROPFIND') });
const path = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('/v1/enroll', '/v1/enroll?x=1') },
  { weight: 3, arbitrary: fc.constantFrom('/metrics', '/metrics?name=up') },
  { weight: 1, arbitrary: fc.constantFrom('/v1/enroll/', '/V1/enroll', '//metrics', '/', '/v1', '/v1/enroll%00', '/metrics/../v1/enroll', '/metrics#x', '/v1/enroll;x') },
  { weight: 1, arbitrary: fc.stringMatching(/^\/[a-zA-Z0-9._~%/?=&-]{0,30}$/) },
);
const contentType = fc.option(fc.oneof(fc.constantFrom('application/pkcs10', 'application/x-pem-file', 'application/json', 'text/plain; charset=utf-8', 'multipart/form-data; boundary=x', 'application/pkcs10; charset=\u00ff'.replace('\u00ff', 'x')), printable(' ')), { nil: undefined });

type BodyKind = 'valid' | 'other';
/** Bodies: the test CSR (PEM or DER) whole, cut, with bytes changed, with junk around it; a weak CSR; random bytes; text; too large. */
const body = (ctx: AdminContext): fc.Arbitrary<{ bytes: Buffer; kind: BodyKind }> =>
  fc.oneof(
    { weight: 2, arbitrary: fc.constantFrom(ctx.csr.pem, ctx.csr.der).map((bytes) => ({ bytes, kind: 'valid' as const })) },
    { weight: 1, arbitrary: fc.tuple(printable('\n'), printable('\n')).map(([a, b]) => ({ bytes: Buffer.concat([Buffer.from(a), ctx.csr.pem, Buffer.from(b)]), kind: 'valid' as const })) },
    {
      weight: 3,
      arbitrary: fc
        .tuple(fc.constantFrom(ctx.csr.pem, ctx.csr.der, ctx.csr.weak), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 }), fc.option(fc.nat(), { nil: undefined }))
        .map(([base, edits, cut]) => {
          const b = Buffer.from(base);
          for (const [at, v] of edits) b[at % b.length] = v;
          return { bytes: cut === undefined ? b : b.subarray(0, cut % b.length), kind: 'other' as const };
        }),
    },
    { weight: 1, arbitrary: fc.constant({ bytes: ctx.csr.weak, kind: 'other' as const }) },
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: 600 }).map((b) => ({ bytes: Buffer.from(b), kind: 'other' as const })) },
    { weight: 1, arbitrary: printable('\n').map((s) => ({ bytes: Buffer.from(`-----BEGIN CERTIFICATE REQUEST-----\n${s}\n-----END CERTIFICATE REQUEST-----\n`), kind: 'other' as const })) },
    { weight: 1, arbitrary: fc.integer({ min: maxCsrBytes - 2, max: 64 * 1024 }).map((n) => ({ bytes: Buffer.alloc(n, 0x30), kind: 'other' as const })) },
  );

/**
 * Whether a body is, byte for byte as the endpoint reads it, the test CSR:
 * a PEM block anywhere in it (its base64 decoded as Node decodes it), else the DER.
 */
function isTestCsr(ctx: AdminContext, bytes: Buffer): boolean {
  const pem = /-----BEGIN (NEW )?CERTIFICATE REQUEST-----([\s\S]*?)-----END (NEW )?CERTIFICATE REQUEST-----/.exec(bytes.toString('latin1'));
  const der = pem ? Buffer.from((pem[2] as string).replace(/\s+/g, ''), 'base64') : bytes;
  return der.equals(ctx.csr.der);
}

export const requestArb = (ctx: AdminContext) =>
  fc.record({ method, path, authorization: authorization(ctx), contentType, body: body(ctx) }).map((r) => ({ request: { ...r, body: r.body.bytes } as AdminRequest, generatedValid: r.body.kind === 'valid' }));

/** Common names with the characters a DN string syntax would read specially. */
const commonName = fc.string({ unit: fc.constantFrom(...'abcXYZ019 ,=+\\"#<>;é-'.split('')), minLength: 1, maxLength: 16 });

export const adminProperties: PropertySuite<AdminContext> = {
  target: 'admin',
  title: 'admin API input (properties)',
  async open() {
    const dir = mkdtempSync(join(tmpdir(), 'pcl-admin-fuzz-'));
    const errors: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n')) if (line.includes('"level":50') || line.includes('"level":60')) errors.push(line);
        done();
      },
    });
    const listener = await AdminListener.open({ address: { host: '127.0.0.1', port: 0 }, dataDir: dir, profile: tlsProfiles.intermediate, log: pino({ level: 'warn' }, sink), metrics: new SupervisorMetrics(), scrape: async () => metricsText });
    const store = await CaStore.open(dir);
    const keyFile = join(dir, 'partner.key');
    const pem = execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-subj', '/CN=admin/O=Evil', '-addext', 'subjectAltName=URI:spiffe://example.test/admin'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const weak = execFileSync('openssl', ['req', '-new', '-newkey', 'rsa:1024', '-nodes', '-keyout', join(dir, 'weak.key'), '-subj', '/CN=x', '-outform', 'DER'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const der = Buffer.from(pem.toString().replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
    const token = (validForMs: number) => store.createEnrollment({ commonName: 'fuzz', uris: ['spiffe://example.test/fuzz'], dns: [], lifetimeDays: 1, validForMs });
    const [live, spent, expired] = [await token(3_600_000), await token(3_600_000), await token(1)];
    await store.enroll(spent.token, await requestedPublicKey(der));
    await untilPast(Date.parse(expired.record.expiresAt));
    const ctx: AdminContext = {
      dir,
      listener,
      port: listener.address.port,
      agent: new Agent({ keepAlive: true, maxSockets: 4 }),
      ca: readFileSync(store.ca.certFile),
      adminToken: readFileSync(join(dir, 'admin', 'token'), 'utf8').trim(),
      store,
      csr: { pem, der, key: readFileSync(keyFile), weak },
      tokens: { live: live.token, liveId: live.record.id, spent: spent.token, expired: expired.token },
      errors,
    };
    return ctx;
  },
  async close(ctx) {
    ctx.agent.destroy();
    await ctx.listener.close();
    rmSync(ctx.dir, { recursive: true, force: true });
  },
  cases: [
    propertyCase('any method, path, authorization, content type and body gets the documented answer (reason code and status), never a 500, and a token is spent only on a certificate for the proven key', 300, (ctx) =>
      fc.asyncProperty(requestArb(ctx), async ({ request: r }) => {
        ctx.errors.length = 0;
        const want = model(ctx, r, isTestCsr(ctx, r.body));
        const reply = await send(ctx, r);
        checkReply(ctx, r, reply, want);
        await checkToken(ctx, reply);
        assert.deepEqual(ctx.errors, [], 'the listener logged an internal error');
      }),
    ),
    propertyCase('the content type of an enrollment never changes its outcome, and an invalid request never spends the token', 100, (ctx) =>
      fc.asyncProperty(body(ctx).filter((b) => b.kind === 'other'), fc.array(contentType, { minLength: 2, maxLength: 3 }), async ({ bytes }, types) => {
        ctx.errors.length = 0;
        const outcomes = [];
        for (const contentType of types) {
          const reply = await send(ctx, { method: 'POST', path: '/v1/enroll', authorization: `Bearer ${ctx.tokens.live}`, contentType, body: bytes });
          assert.deepEqual(ctx.errors, [], 'the listener logged an internal error');
          await checkToken(ctx, reply);
          outcomes.push(`${reply.status} ${reply.status === 200 ? '' : (JSON.parse(reply.body.toString()) as { reason: string }).reason}`);
        }
        assert.equal(new Set(outcomes).size, 1, outcomes.join(' / '));
      }),
    ),
    propertyCase('concurrent enrollments with one live token and the valid CSR issue exactly one certificate', 15, (ctx) =>
      fc.asyncProperty(fc.integer({ min: 2, max: 6 }), fc.boolean(), async (n, asPem) => {
        const replies = await Promise.all(Array.from({ length: n }, () => send(ctx, { method: 'POST', path: '/v1/enroll', authorization: `Bearer ${ctx.tokens.live}`, contentType: 'application/pkcs10', body: asPem ? ctx.csr.pem : ctx.csr.der })));
        assert.deepEqual(replies.map((r) => r.status).sort(), [200, ...Array<number>(n - 1).fill(403)]);
        await checkToken(ctx, replies.find((r) => r.status === 200) as Reply);
      }),
    ),
    propertyCase(
      'a CSR whose public key is corrupted is refused as bad_csr or weak_csr_key, never a 500, and no token is spent (F7)',
      100,
      (ctx) =>
        fc.asyncProperty(fc.nat(), fc.integer({ min: 0, max: 255 }), async (at, value) => {
          const der = Buffer.from(ctx.csr.weak);
          // a byte of the SubjectPublicKeyInfo's BIT STRING (the RSAPublicKey) changed
          const spki = rsaKeyRange(der);
          der[spki.start + (at % (spki.end - spki.start))] = value;
          ctx.errors.length = 0;
          const reply = await send(ctx, { method: 'POST', path: '/v1/enroll', authorization: `Bearer ${ctx.tokens.live}`, contentType: 'application/pkcs10', body: der });
          assert.equal(reply.status, 400, reply.body.toString());
          assert.ok(['bad_csr', 'weak_csr_key'].includes((JSON.parse(reply.body.toString()) as { reason: string }).reason), reply.body.toString());
          assert.deepEqual(ctx.errors, [], 'the listener logged an internal error');
          await checkToken(ctx, reply);
        }),
    ),
    propertyCase(
      'an enrollment token made for any common name issues a certificate with exactly that name (F5: the built-in CA read names as DN text, "#…" as hex DER)',
      30,
      (ctx) =>
        fc.asyncProperty(commonName, async (name) => {
          const { token } = await ctx.store.createEnrollment({ commonName: name, uris: [], dns: [], lifetimeDays: 1, validForMs: 60_000 });
          const reply = await send(ctx, { method: 'POST', path: '/v1/enroll', authorization: `Bearer ${token}`, contentType: 'application/pkcs10', body: ctx.csr.der });
          assert.equal(reply.status, 200, reply.body.toString());
          const subject = new x509Reader(reply.body).commonName;
          assert.equal(subject, name);
          // and the proxy reads it back the same from Node's escaped text (F6)
          assert.deepEqual(identityOf(new X509Certificate(reply.body)).subjectAttributes.get('CN'), [name]);
        }),
    ),
  ],
};

/** Where the RSAPublicKey of an RSA CSR sits: after the rsaEncryption OID, NULL, BIT STRING header and unused-bits byte. */
export function rsaKeyRange(der: Buffer): { start: number; end: number } {
  const oid = der.indexOf(Buffer.from('06092a864886f70d0101010500', 'hex'));
  assert.ok(oid > 0, 'an RSA CSR');
  let at = oid + 13;
  assert.equal(der[at], 0x03, 'BIT STRING');
  const first = der[at + 1] as number;
  const lengthBytes = first & 0x80 ? first & 0x7f : 0;
  const length = lengthBytes ? der.readUIntBE(at + 2, lengthBytes) : first;
  at += 2 + lengthBytes;
  return { start: at + 1, end: at + length };
}

/** The CN of a PEM certificate, as the DER holds it (read from the ASN.1 value, not from Node's escaped text). */
class x509Reader {
  readonly commonName: string | undefined;
  constructor(pem: Buffer) {
    this.commonName = new x509.X509Certificate(new X509Certificate(pem).raw).subjectName.getField('CN')[0];
  }
}
