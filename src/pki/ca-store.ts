import { X509Certificate } from 'node:crypto';
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import * as asn1js from 'asn1js';
import { PortcullisError } from '../errors.js';
import { writeFileAtomic } from '../state/index.js';
import { ensureLocalCa, issueCertificate, type IssuedLeaf, type LeafRequest, type LocalCa } from './local-ca.js';
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
}

interface Database {
  readonly version: 1;
  /** The number of the last CRL published (RFC 5280 §5.2.3: strictly increasing). */
  readonly crlNumber: number;
  readonly issued: readonly IssuedRecord[];
}

/** CRLReason names `ca revoke --reason` accepts. */
export const revocationReasons = ['unspecified', 'keyCompromise', 'cACompromise', 'affiliationChanged', 'superseded', 'cessationOfOperation'] as const;
export type RevocationReason = (typeof revocationReasons)[number];

const algorithm = { name: 'ECDSA', hash: 'SHA-256' } as const;
const day = 86_400_000;

/**
 * The built-in CA with its database under `dataDir/ca/`: the root (the same
 * one the quickstart uses), `db.json` (issued certificates, revocations, CRL
 * number) and `ca.crl` (the current CRL, as OpenSSL reads it). Every change
 * holds an exclusive lock file, records the new state with an atomic write
 * before anything else is handed out, and so survives a crash at any point:
 * the database is the old or the new one, never torn; serials are 128 random
 * bits, never reused.
 */
export class CaStore {
  readonly dir: string;
  readonly ca: LocalCa;
  readonly crlFile: string;
  readonly #dbFile: string;

  private constructor(dir: string, ca: LocalCa) {
    this.dir = dir;
    this.ca = ca;
    this.crlFile = join(dir, 'ca.crl');
    this.#dbFile = join(dir, 'db.json');
  }

  /** Opens the CA under `dataDir/ca`, creating the root on first use. */
  static async open(dataDir: string): Promise<CaStore> {
    const dir = join(dataDir, 'ca');
    return new CaStore(dir, await ensureLocalCa(dir));
  }

  list(): readonly IssuedRecord[] {
    return this.#read().issued;
  }

  async issue(request: LeafRequest): Promise<IssuedLeaf> {
    return this.#locked(async () => {
      const leaf = await issueCertificate(this.ca, request);
      const cert = new X509Certificate(leaf.certPem);
      const db = this.#read();
      const record: IssuedRecord = {
        serial: leaf.serial,
        usage: request.usage,
        commonName: request.commonName,
        hosts: request.hosts ?? [],
        uris: request.uris ?? [],
        fingerprint: `sha256:${cert.fingerprint256}`,
        issuedAt: new Date().toISOString(),
        notAfter: leaf.notAfter.toISOString(),
        revokedAt: null,
        revocationReason: null,
      };
      this.#write({ ...db, issued: [...db.issued, record] });
      return leaf;
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

  async #publishCrl(db: Database, validDays = 7): Promise<void> {
    const crlNumber = db.crlNumber + 1;
    // the number is taken before the CRL exists: a crash in between skips a number, never repeats one
    this.#write({ ...db, crlNumber });
    const now = Date.now();
    const crl = await x509.X509CrlGenerator.create({
      issuer: this.ca.cert.subject,
      thisUpdate: new Date(now - 60_000),
      nextUpdate: new Date(now + validDays * day),
      signingAlgorithm: algorithm,
      signingKey: this.ca.privateKey,
      extensions: [new x509.Extension('2.5.29.20', false, new asn1js.Integer({ value: crlNumber }).toBER()), await x509.AuthorityKeyIdentifierExtension.create(this.ca.cert)],
      entries: db.issued
        .filter((r) => r.revokedAt)
        .map((r) => ({ serialNumber: r.serial, revocationDate: new Date(r.revokedAt as string), reason: x509.X509CrlReason[r.revocationReason as RevocationReason] })),
    });
    writeFileAtomic(this.crlFile, `${x509.PemConverter.encode(crl.rawData, 'X509 CRL')}\n`);
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

  /** One change at a time across processes: an exclusive lock file, taken over when the process that left it is gone. */
  async #locked<T>(fn: () => Promise<T>): Promise<T> {
    const lock = join(this.dir, 'db.lock');
    for (let attempt = 0; ; attempt++) {
      try {
        const fd = openSync(lock, 'wx', 0o600);
        writeSync(fd, String(process.pid));
        closeSync(fd);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const holder = Number(readFileSync(lock, 'utf8') || 0);
        if (!holder || !alive(holder)) {
          unlinkSync(lock);
          continue;
        }
        if (attempt > 100) throw new PortcullisError('PCL_PKI_STORE_INVALID', `${lock} is held by process ${holder}; wait for it to finish, or remove the file if it is not a Portcullis command`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    try {
      return await fn();
    } finally {
      unlinkSync(lock);
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
