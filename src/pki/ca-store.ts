import { X509Certificate, createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as asn1js from 'asn1js';
import { PortcullisError } from '../errors.js';
import { caFolder, writeFileAtomic } from '../state/index.js';
import { lockCaFolder } from './ca-folder-lock.js';
import type { CaReplica } from './ca-replica.js';
import { commonNameProblem, ensureIntermediate, ensureLocalCa, issueCertificate, signCertificate, type CaKeyPair, type IssuedLeaf, type LeafRequest, type LocalCa, type SignedLeaf } from './local-ca.js';
import { x509 } from './x509.js';

/** One certificate the built-in CA issued, as its database keeps it. */
export interface IssuedRecord {
  /** Upper-case hex. */
  readonly serial: string;
  readonly usage: 'server' | 'client';
  readonly commonName: string;
  readonly hosts: readonly string[];
  readonly uris: readonly string[];
  readonly fingerprint: string;
  readonly issuedAt: string;
  readonly notAfter: string;
  readonly revokedAt: string | null;
  readonly revocationReason: string | null;
  /** Subject of the CA that signed it; absent in records from before intermediates (the root signed those). */
  readonly issuer?: string;
}

/** A single-use enrollment token, as the database keeps it: the secret only as its SHA-256. */
export interface EnrollmentRecord {
  /** 16 hex digits, the public part of the token. */
  readonly id: string;
  readonly secretSha256: string;
  readonly commonName: string;
  readonly uris: readonly string[];
  readonly dns: readonly string[];
  readonly lifetimeDays: number;
  readonly createdAt: string;
  readonly expiresAt: string;
  readonly usedAt: string | null;
  /** The certificate the token was spent on. */
  readonly serial: string | null;
}

interface Database {
  readonly version: 1;
  /** The number of the last CRL published (RFC 5280 §5.2.3: strictly increasing). */
  readonly crlNumber: number;
  readonly issued: readonly IssuedRecord[];
  /** Absent in databases written before enrollment existed. */
  readonly enrollments?: readonly EnrollmentRecord[];
}

export type EnrollmentRefusal = 'unknown_enrollment_token' | 'used_enrollment_token' | 'expired_enrollment_token';

/** Why an enrollment token was not accepted; `reason` is a reason code of the catalog. */
export class EnrollmentError extends Error {
  constructor(
    readonly reason: EnrollmentRefusal,
    message: string,
  ) {
    super(message);
    this.name = 'EnrollmentError';
  }
}

/** `pce_` + id + `_` + 256-bit secret (base64url): recognisable in a leaked log or repository, like GitHub's token prefixes. */
const tokenPattern = /^pce_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
const sha256 = (text: string) => createHash('sha256').update(text).digest();

/** CRLReason names `ca revoke --reason` accepts. */
export const revocationReasons = ['unspecified', 'keyCompromise', 'cACompromise', 'affiliationChanged', 'superseded', 'cessationOfOperation'] as const;
export type RevocationReason = (typeof revocationReasons)[number];

const algorithm = { name: 'ECDSA', hash: 'SHA-256' } as const;
const day = 86_400_000;

/** The CRLs the CA in folder `dir` publishes: the root's, and the intermediate's (written only when there is an intermediate). */
export const caCrlFiles = (dir: string): { root: string; issuing: string } => ({ root: join(dir, 'ca.crl'), issuing: join(dir, 'issuing.crl') });

/**
 * The built-in CA with its database under `dataDir/ca/`: the root (the same
 * one the quickstart uses), `db.json` (issued certificates, revocations, CRL
 * number) and `ca.crl` (the current CRL, as OpenSSL reads it). Every change
 * holds an exclusive lock file, records the new state with an atomic write
 * before anything else is handed out, and so survives a crash at any point:
 * the database is the old or the new one, never torn; serials are 128 random
 * bits, never reused. With a `replica` (a cluster on Redis) the folder is
 * the local copy of the cluster's CA: every change also holds the cluster's
 * lock, starts from the cluster's copy and is recorded there before anything
 * is handed out (`ca-replica.ts`).
 */
export class CaStore {
  readonly dir: string;
  #ca: LocalCa;
  /** The root's CRL: the leaves it signed, and the intermediate. */
  readonly crlFile: string;
  readonly #dbFile: string;
  readonly #replica: CaReplica | null;

  private constructor(dir: string, ca: LocalCa, replica: CaReplica | null) {
    this.dir = dir;
    this.#ca = ca;
    this.crlFile = caCrlFiles(dir).root;
    this.#dbFile = join(dir, 'db.json');
    this.#replica = replica;
  }

  /**
   * Opens the CA under `dataDir/ca`, creating the root on first use and, with
   * `intermediate`, an intermediate under it. With a `replica`, the cluster's
   * CA: pulled into the folder, or created (or taken from the folder) and
   * recorded when the cluster has none yet.
   */
  static async open(dataDir: string, opts: { intermediate?: boolean; replica?: CaReplica | null } = {}): Promise<CaStore> {
    const dir = caFolder(dataDir);
    const ensure = () => (opts.intermediate ? ensureIntermediate(dir) : ensureLocalCa(dir));
    const replica = opts.replica ?? null;
    if (!replica) return new CaStore(dir, await ensure(), null);
    return replica.change(dir, async () => new CaStore(dir, await ensure(), replica));
  }

  /** The root and the CA that signs (the cluster's as of the latest change, with a replica). */
  get ca(): LocalCa {
    return this.#ca;
  }

  /** The intermediate's CRL (the leaves it signed), when there is an intermediate. */
  get issuingCrlFile(): string | null {
    return this.#ca.chainPem ? caCrlFiles(this.dir).issuing : null;
  }

  /** Every CRL a relying party needs: the root's, then the intermediate's. */
  get crlFiles(): string[] {
    return this.issuingCrlFile ? [this.crlFile, this.issuingCrlFile] : [this.crlFile];
  }

  list(): readonly IssuedRecord[] {
    return this.#read().issued;
  }

  enrollments(): readonly EnrollmentRecord[] {
    return this.#read().enrollments ?? [];
  }

  /** Issues and records a leaf. A client certificate's common name must pass `commonNameProblem` (PCL_CLI_USAGE otherwise); a server's is its first host. */
  async issue(request: LeafRequest): Promise<IssuedLeaf> {
    if (request.usage === 'client') checkCommonName(request.commonName);
    return this.#locked(async () => {
      const leaf = await issueCertificate(this.ca, request);
      const db = this.#read();
      this.#write({ ...db, issued: [...db.issued, issuedRecord(request, leaf, this.ca)] });
      return leaf;
    });
  }

  /**
   * Makes a single-use token that lets its holder have one client certificate
   * issued for the names given here (never the names of its request). Returns
   * the token: it is shown once and only its hash is kept. The common name
   * must pass `commonNameProblem` (PCL_CLI_USAGE otherwise), so that a token
   * never promises a certificate the CA will not make.
   */
  async createEnrollment(request: { commonName: string; uris: readonly string[]; dns: readonly string[]; lifetimeDays: number; validForMs: number }): Promise<{ token: string; record: EnrollmentRecord }> {
    checkCommonName(request.commonName);
    return this.#locked(async () => {
      const id = randomBytes(8).toString('hex');
      const secret = randomBytes(32).toString('base64url');
      const now = Date.now();
      const record: EnrollmentRecord = {
        id,
        secretSha256: sha256(secret).toString('hex'),
        commonName: request.commonName,
        uris: request.uris,
        dns: request.dns,
        lifetimeDays: request.lifetimeDays,
        createdAt: new Date(now).toISOString(),
        expiresAt: new Date(now + request.validForMs).toISOString(),
        usedAt: null,
        serial: null,
      };
      const db = this.#read();
      this.#write({ ...db, enrollments: [...(db.enrollments ?? []), record] });
      return { token: `pce_${id}_${secret}`, record };
    });
  }

  /**
   * Spends `token` on a client certificate for `publicKey` (from a CSR whose
   * signature the caller verified). Check, issue and spend happen under the
   * database lock, and the spent token is written before the certificate is
   * returned: of two concurrent uses one wins, and a crash in between leaves
   * the token unspent and nothing handed out.
   */
  async enroll(token: string, publicKey: x509.PublicKey): Promise<{ leaf: SignedLeaf; record: EnrollmentRecord }> {
    const m = tokenPattern.exec(token);
    if (!m) throw new EnrollmentError('unknown_enrollment_token', 'the token is not an enrollment token (pce_…); use the token portcullis ca enroll-token printed');
    const [, id, secret] = m as unknown as [string, string, string];
    return this.#locked(async () => {
      const db = this.#read();
      const found = (db.enrollments ?? []).find((e) => e.id === id);
      // compared in constant time so that timing does not reveal how much of a guessed secret was right
      if (!found || !timingSafeEqual(sha256(secret), Buffer.from(found.secretSha256, 'hex'))) {
        throw new EnrollmentError('unknown_enrollment_token', 'this CA made no such enrollment token; ask the operator for a new one');
      }
      if (found.usedAt) throw new EnrollmentError('used_enrollment_token', `the token was used at ${found.usedAt}; each token issues one certificate: ask the operator for a new one`);
      if (Date.parse(found.expiresAt) <= Date.now()) throw new EnrollmentError('expired_enrollment_token', `the token expired at ${found.expiresAt}; ask the operator for a new one`);
      const request: LeafRequest = { commonName: found.commonName, hosts: found.dns, uris: found.uris, usage: 'client', lifetimeDays: found.lifetimeDays };
      const leaf = await signCertificate(this.ca, request, publicKey);
      const spent: EnrollmentRecord = { ...found, usedAt: new Date().toISOString(), serial: leaf.serial };
      this.#write({ ...db, issued: [...db.issued, issuedRecord(request, leaf, this.ca)], enrollments: (db.enrollments ?? []).map((e) => (e === found ? spent : e)) });
      return { leaf, record: spent };
    });
  }

  /** Marks `serial` revoked and publishes a new CRL at once (a proxy watching `ca.crl` applies it within a moment). */
  async revoke(serial: string, reason: RevocationReason = 'unspecified'): Promise<IssuedRecord> {
    return this.#locked(async () => {
      const db = this.#read();
      const wanted = serial.replace(/:/g, '').toUpperCase().replace(/^0+/, '');
      const record = db.issued.find((r) => r.serial.replace(/^0+/, '') === wanted);
      if (!record) throw new PortcullisError('PCL_CLI_USAGE', `no certificate with serial ${serial} was issued by this CA; see portcullis ca list`);
      if (record.revokedAt) return record;
      const revoked = { ...record, revokedAt: new Date().toISOString(), revocationReason: reason };
      const next = { ...db, issued: db.issued.map((r) => (r === record ? revoked : r)) };
      this.#write(next);
      await this.#publishCrl(next);
      return revoked;
    });
  }

  /** Publishes a fresh CRL (a new, higher CRL number); returns its file. */
  async publishCrl(validDays = 7): Promise<string> {
    return this.#locked(async () => {
      await this.#publishCrl(this.#read(), validDays);
      return this.crlFile;
    });
  }

  /** Publishes the root's CRL and, with an intermediate, the intermediate's, each listing the revoked certificates it signed. */
  async #publishCrl(db: Database, validDays = 7): Promise<void> {
    const crlNumber = db.crlNumber + 1;
    // the number is taken before the CRL exists: a crash in between skips a number, never repeats one
    this.#write({ ...db, crlNumber });
    const root = this.ca.cert.subject;
    await this.#writeCrl(this.ca, this.crlFile, db.issued.filter((r) => (r.issuer ?? root) === root), crlNumber, validDays);
    if (this.issuingCrlFile) await this.#writeCrl(this.ca.issuing, this.issuingCrlFile, db.issued.filter((r) => r.issuer === this.ca.issuing.cert.subject), crlNumber, validDays);
  }

  async #writeCrl(signer: CaKeyPair, file: string, records: readonly IssuedRecord[], crlNumber: number, validDays: number): Promise<void> {
    const now = Date.now();
    const crl = await x509.X509CrlGenerator.create({
      issuer: signer.cert.subject,
      thisUpdate: new Date(now - 60_000),
      nextUpdate: new Date(now + validDays * day),
      signingAlgorithm: algorithm,
      signingKey: signer.privateKey,
      extensions: [new x509.Extension('2.5.29.20', false, new asn1js.Integer({ value: crlNumber }).toBER()), await x509.AuthorityKeyIdentifierExtension.create(signer.cert)],
      entries: records
        .filter((r) => r.revokedAt)
        .map((r) => ({ serialNumber: r.serial, revocationDate: new Date(r.revokedAt as string), reason: x509.X509CrlReason[r.revocationReason as RevocationReason] })),
    });
    writeFileAtomic(file, `${x509.PemConverter.encode(crl.rawData, 'X509 CRL')}\n`);
  }

  #read(): Database {
    let text: string;
    try {
      text = readFileSync(this.#dbFile, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, crlNumber: 0, issued: [] };
      throw new PortcullisError('PCL_PKI_STORE_INVALID', `cannot read ${this.#dbFile} (${(err as NodeJS.ErrnoException).code}); check its permissions`, { cause: err });
    }
    try {
      const db = JSON.parse(text) as Database;
      if (db.version !== 1 || !Array.isArray(db.issued) || typeof db.crlNumber !== 'number') throw new Error('not a version 1 CA database');
      return db;
    } catch (err) {
      throw new PortcullisError('PCL_PKI_STORE_INVALID', `${this.#dbFile} is not a CA database (${(err as Error).message}); restore it from a backup`, { cause: err });
    }
  }

  #write(db: Database): void {
    writeFileAtomic(this.#dbFile, `${JSON.stringify(db, null, 2)}\n`, 0o600);
  }

  /** One change at a time: this machine's folder lock, and with a replica the cluster's lock around it, signing with the cluster's current CA. */
  async #locked<T>(fn: () => Promise<T>): Promise<T> {
    const replica = this.#replica;
    if (!replica) return lockCaFolder(this.dir, fn);
    return replica.change(this.dir, async () => {
      // the pull (or an earlier refresh) may have brought another instance's new intermediate
      this.#ca = await ensureLocalCa(this.dir);
      return fn();
    });
  }
}

function checkCommonName(name: string): void {
  const problem = commonNameProblem(name);
  if (problem) throw new PortcullisError('PCL_CLI_USAGE', `the common name ${JSON.stringify(name)} ${problem}`);
}

function issuedRecord(request: LeafRequest, leaf: SignedLeaf, ca: LocalCa): IssuedRecord {
  return {
    issuer: ca.issuing.cert.subject,
    serial: leaf.serial,
    usage: request.usage,
    commonName: request.commonName,
    hosts: request.hosts ?? [],
    uris: request.uris ?? [],
    fingerprint: `sha256:${new X509Certificate(leaf.certPem).fingerprint256}`,
    issuedAt: new Date().toISOString(),
    notAfter: leaf.notAfter.toISOString(),
    revokedAt: null,
    revocationReason: null,
  };
}
