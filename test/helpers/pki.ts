import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A test PKI made with the openssl CLI (`openssl req` / `openssl ca`), so that
 * test certificates come from an independent implementation. Supports roots,
 * intermediates and leaves with any key type, SANs, EKU and validity window,
 * including expired and not-yet-valid ones.
 */

export type KeyType = 'ec' | 'ec384' | 'rsa' | 'rsa1024';

export interface Ca {
  readonly name: string;
  readonly dir: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** This CA and the intermediates above it (not the root), leaf-side first. */
  readonly chainFiles: readonly string[];
  readonly root: boolean;
}

export interface Leaf {
  readonly certFile: string;
  readonly keyFile: string;
  /** Leaf followed by every intermediate up to (not including) the root. */
  readonly chainFile: string;
  readonly certPem: string;
}

export interface LeafOptions {
  readonly dns?: readonly string[];
  readonly ips?: readonly string[];
  readonly uris?: readonly string[];
  readonly emails?: readonly string[];
  readonly key?: KeyType;
  /** null: no extended key usage at all. */
  readonly eku?: 'serverAuth' | 'clientAuth' | 'serverAuth,clientAuth' | 'OCSPSigning' | null;
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  readonly subject?: string;
  readonly digest?: 'sha256' | 'sha1';
  /** Leave out the authority key identifier, so chains are built by issuer name alone. */
  readonly noAuthorityKeyId?: boolean;
  /** Revocation pointers: the OCSP responder (authority information access) and a CRL distribution point. */
  readonly ocspUrl?: string;
  readonly crlUrl?: string;
}

export interface CrlOptions {
  /** Defaults: now minus a minute, and a week later. */
  readonly lastUpdate?: Date;
  readonly nextUpdate?: Date;
  readonly der?: boolean;
  /** Sign with this CA's key and name instead (a CRL that does not verify under `ca`). */
  readonly signedBy?: Ca;
  /** CRL extension lines in openssl config syntax, e.g. ["issuingDistributionPoint = critical, @idp", "[ idp ]", "onlyuser = TRUE"]. */
  readonly extensions?: readonly string[];
}

function openssl(args: string[], input?: string): string {
  return execFileSync('openssl', args, { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
}

/** openssl ca's date format: YYYYMMDDHHMMSSZ. */
function asn1Time(d: Date): string {
  return `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
}

const day = 86_400_000;

export class TestPki {
  readonly dir: string;
  #serial = 1;

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'pcl-pki-'));
  }

  /** Removes every file. */
  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  key(file: string, type: KeyType = 'ec'): string {
    const args: Record<KeyType, string[]> = {
      ec: ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'],
      ec384: ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384'],
      rsa: ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'],
      rsa1024: ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:1024'],
    };
    openssl(['genpkey', ...args[type], '-out', file]);
    return file;
  }

  #caConfig(ca: { dir: string }): string {
    const cfg = join(ca.dir, 'ca.cnf');
    writeFileSync(
      cfg,
      [
        '[ ca ]',
        'default_ca = ca_default',
        '[ ca_default ]',
        `dir = ${ca.dir}`,
        'database = $dir/index.txt',
        'new_certs_dir = $dir/issued',
        'serial = $dir/serial',
        'crlnumber = $dir/crlnumber',
        'default_md = sha256',
        'default_crl_days = 7',
        'policy = policy_any',
        'unique_subject = no',
        'copy_extensions = none',
        'email_in_dn = no',
        '[ policy_any ]',
        'commonName = supplied',
        'organizationName = optional',
        'organizationalUnitName = optional',
        'countryName = optional',
        'emailAddress = optional',
        '',
      ].join('\n'),
    );
    return cfg;
  }

  #initCaDir(name: string): string {
    const dir = join(this.dir, name);
    mkdirSync(join(dir, 'issued'), { recursive: true });
    writeFileSync(join(dir, 'index.txt'), '');
    writeFileSync(join(dir, 'serial'), `${(this.#serial++ * 4096).toString(16).padStart(4, '0')}\n`);
    writeFileSync(join(dir, 'crlnumber'), '1000\n');
    return dir;
  }

  /** A self-signed root CA. */
  root(name: string, key: KeyType = 'ec'): Ca {
    const dir = this.#initCaDir(name);
    const keyFile = this.key(join(dir, 'ca.key'), key);
    const certFile = join(dir, 'ca.pem');
    openssl([
      'req', '-x509', '-new', '-key', keyFile, '-out', certFile, '-days', '3650', '-subj', `/CN=${name}/O=Portcullis Tests`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-addext', 'subjectKeyIdentifier=hash',
    ]);
    this.#caConfig({ dir });
    return { name, dir, certFile, keyFile, chainFiles: [], root: true };
  }

  /** An intermediate CA issued by `parent`; `commonName` gives it another CA's name (an impostor). */
  intermediate(name: string, parent: Ca, opts: { pathLen?: number; key?: KeyType; commonName?: string; notBefore?: Date; notAfter?: Date } = {}): Ca {
    const dir = this.#initCaDir(name);
    const keyFile = this.key(join(dir, 'ca.key'), opts.key);
    const certFile = join(dir, 'ca.pem');
    const ext = [
      '[ ext ]',
      `basicConstraints = critical,CA:TRUE${opts.pathLen === undefined ? '' : `,pathlen:${opts.pathLen}`}`,
      'keyUsage = critical,keyCertSign,cRLSign',
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid',
    ].join('\n');
    this.#sign(parent, keyFile, certFile, `/CN=${opts.commonName ?? name}/O=Portcullis Tests`, ext, opts.notBefore ?? new Date(Date.now() - day), opts.notAfter ?? new Date(Date.now() + 1825 * day), 'sha256');
    this.#caConfig({ dir });
    return { name, dir, certFile, keyFile, chainFiles: [certFile, ...parent.chainFiles], root: false };
  }

  /** A leaf certificate issued by `issuer`. */
  leaf(name: string, issuer: Ca, opts: LeafOptions = {}): Leaf {
    const base = join(this.dir, 'leaves', name);
    mkdirSync(join(this.dir, 'leaves'), { recursive: true });
    const keyFile = this.key(`${base}.key`, opts.key);
    const certFile = `${base}.pem`;
    const sans = [
      ...(opts.dns ?? []).map((d) => `DNS:${d}`),
      ...(opts.ips ?? []).map((i) => `IP:${i}`),
      ...(opts.uris ?? []).map((u) => `URI:${u}`),
      ...(opts.emails ?? []).map((e) => `email:${e}`),
    ];
    const eku = opts.eku === undefined ? 'serverAuth' : opts.eku;
    const ext = [
      '[ ext ]',
      'basicConstraints = critical,CA:FALSE',
      'keyUsage = critical,digitalSignature,keyEncipherment',
      ...(eku === null ? [] : [`extendedKeyUsage = ${eku}`]),
      'subjectKeyIdentifier = hash',
      ...(opts.noAuthorityKeyId ? [] : ['authorityKeyIdentifier = keyid']),
      ...(sans.length ? [`subjectAltName = ${sans.join(',')}`] : []),
      ...(opts.ocspUrl ? [`authorityInfoAccess = OCSP;URI:${opts.ocspUrl}`] : []),
      ...(opts.crlUrl ? [`crlDistributionPoints = URI:${opts.crlUrl}`] : []),
    ].join('\n');
    const notBefore = opts.notBefore ?? new Date(Date.now() - day);
    const notAfter = opts.notAfter ?? new Date(Date.now() + 90 * day);
    this.#sign(issuer, keyFile, certFile, opts.subject ?? `/CN=${name}`, ext, notBefore, notAfter, opts.digest ?? 'sha256');
    const certPem = readFileSync(certFile, 'utf8');
    const chainFile = `${base}.chain.pem`;
    writeFileSync(chainFile, [certPem, ...issuer.chainFiles.map((f) => readFileSync(f, 'utf8'))].join(''));
    return { certFile, keyFile, chainFile, certPem };
  }

  /** Marks a certificate issued by `ca` revoked in its database (for its CRLs and an `openssl ocsp` responder over its index). */
  revoke(ca: Ca, certFile: string): void {
    openssl(['ca', '-batch', '-config', join(ca.dir, 'ca.cnf'), '-cert', ca.certFile, '-keyfile', ca.keyFile, '-revoke', certFile]);
  }

  /** The index an `openssl ocsp` responder serves for `ca`. */
  indexFile(ca: Ca): string {
    return join(ca.dir, 'index.txt');
  }

  /** Writes a CRL of `ca` (made by `openssl ca -gencrl`) listing what was revoked so far; returns the file. */
  crl(ca: Ca, file: string, opts: CrlOptions = {}): string {
    const signer = opts.signedBy ?? ca;
    const pem = `${file}.tmp.pem`;
    openssl([
      'ca', '-batch', '-gencrl', '-config', opts.extensions ? this.#withCrlExtensions(ca, `${file}.cnf`, opts.extensions) : join(ca.dir, 'ca.cnf'), '-cert', signer.certFile, '-keyfile', signer.keyFile, '-out', pem,
      '-crl_lastupdate', asn1Time(opts.lastUpdate ?? new Date(Date.now() - 60_000)),
      '-crl_nextupdate', asn1Time(opts.nextUpdate ?? new Date(Date.now() + 7 * day)),
      ...(opts.extensions ? ['-crlexts', 'crl_ext'] : []),
    ]);
    // written in one rename, as an operator's tooling would, so a watcher never reads half a file
    const out = `${file}.tmp`;
    if (opts.der) openssl(['crl', '-in', pem, '-outform', 'DER', '-out', out]);
    else writeFileSync(out, readFileSync(pem));
    rmSync(pem);
    renameSync(out, file);
    return file;
  }

  /** `openssl ca` reads -crlexts from its config only: a copy of the CA's with the section added. */
  #withCrlExtensions(ca: Ca, path: string, lines: readonly string[]): string {
    writeFileSync(path, [readFileSync(join(ca.dir, 'ca.cnf'), 'utf8'), '[ crl_ext ]', ...lines, ''].join('\n'));
    return path;
  }

  #sign(issuer: Ca, keyFile: string, certFile: string, subject: string, ext: string, notBefore: Date, notAfter: Date, md: string): void {
    const csr = `${certFile}.csr`;
    const extFile = `${certFile}.ext`;
    writeFileSync(extFile, `${ext}\n`);
    openssl(['req', '-new', '-key', keyFile, '-subj', subject, '-out', csr]);
    openssl([
      'ca', '-batch', '-notext', '-config', join(issuer.dir, 'ca.cnf'), '-cert', issuer.certFile, '-keyfile', issuer.keyFile,
      '-in', csr, '-out', certFile, '-md', md, '-startdate', asn1Time(notBefore), '-enddate', asn1Time(notAfter),
      '-extfile', extFile, '-extensions', 'ext', '-subj', subject, '-preserveDN',
    ]);
  }
}
