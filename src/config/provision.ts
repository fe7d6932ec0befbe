import type { IpRules } from '../access/index.js';
import { createHash, type X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { BlockList, isIP } from 'node:net';
import { resolve } from 'node:path';
import { rootCertificates } from 'node:tls';
import type { ConfigIssue } from '../errors.js';
import { certificateCovers, decodeCertificate, loadCertificatePair, PemError, pemBlocks, x509 } from '../pki/index.js';
import { normaliseSiteHost, parseListenAddress } from './addresses.js';
import { durationMs } from './durations.js';
import { HostTable } from './host-table.js';
import type { RawConfig, RawRoute, RawSite } from './schema.js';
import { tlsProfiles } from './tls-profiles.js';
import { compileAllowList, CrlError, parseCrl, type RevocationPolicy } from '../trust/index.js';
import type { AcmeSource, ClientAuth, Config, CertificatePair, RateLimit, Route, Site, UpstreamTarget, UpstreamTls } from './types.js';
import { acmeCertificateFiles, internalCertificateFiles, resolveDataDir } from '../state/index.js';

/**
 * Turns a schema-valid raw config into the runtime config: resolves paths
 * against the config's folder, reads and checks every file, compiles host
 * and route tables, and runs the cross-field checks. Collects every issue
 * instead of stopping at the first; returns them when there is any.
 */
export function provision(raw: RawConfig, source: string, baseDir: string): { config?: Config; issues: ConfigIssue[] } {
  const issues: ConfigIssue[] = [];
  const issue = (path: string, message: string) => issues.push({ path, message });
  const file = (p: string) => resolve(baseDir, p);
  const dataDir = resolveDataDir(baseDir, raw.dataDir);

  // null when empty: most deployments have no proxy in front, and then no check runs per request
  const trustedProxies = raw.trustedProxies.length > 0 ? blockListOf(raw.trustedProxies) : null;
  const webhook = raw.detector.webhook ?? null;
  // alerts name addresses under attack: plain HTTP only to this machine
  if (webhook && webhook.startsWith('http:') && !['127.0.0.1', 'localhost', '[::1]'].includes(new URL(webhook).hostname)) {
    issue('detector.webhook', 'use https:// for a webhook on another machine (plain http:// is accepted for 127.0.0.1 and localhost only)');
  }

  const hosts = new HostTable<Site>();
  const hostOwner = new Map<string, string>();
  const sites: Site[] = [];
  let defaultSite: Site | null = null;
  raw.sites.forEach((rawSite, i) => {
    const site = provisionSite(rawSite, i, `sites[${i}]`, file, dataDir, raw.listen.http !== undefined, issue);
    sites.push(site);
    site.hosts.forEach((host, j) => {
      const owner = hostOwner.get(host);
      if (owner !== undefined) issue(`sites[${i}].hosts[${j}]`, `"${host}" is already served by ${owner}; each host belongs to exactly one site`);
      else {
        hostOwner.set(host, `sites[${i}]`);
        hosts.add(host, site);
      }
    });
    if (site.isDefault) {
      if (defaultSite) issue(`sites[${i}].default`, `sites[${defaultSite.index}] (${defaultSite.id}) is already the default site; mark only one site default: true`);
      else defaultSite = site;
    }
  });
  const keyHeaderOwner = sites.find((s) => s.identityHeader === raw.apiKeyHeader);
  if (keyHeaderOwner || raw.apiKeyHeader === 'x-client-cert') {
    // identity headers are stripped from every request and set by the proxy: a key there would be judged, then replaced
    issue('apiKeyHeader', `"${raw.apiKeyHeader}" carries the client certificate identity to upstreams${keyHeaderOwner ? ` (sites[${keyHeaderOwner.index}].clientAuth.forwardHeader)` : ''}; use another header for API keys, e.g. "x-api-key"`);
  }
  if (raw.ca.crlPath !== undefined && raw.listen.http === undefined) {
    issue('ca.crlPath', 'the CRL is served on the plain-HTTP listener, as CRL distribution points are; add listen: {http: "0.0.0.0:80"} or remove ca.crlPath');
  }

  if (issues.length > 0) return { issues };
  const t = raw.timeouts;
  const config: Config = {
    source,
    tls: {
      profile: tlsProfiles[raw.tls.profile],
      ticketKeyRotationMs: durationMs(raw.tls.ticketKeyRotation),
      rotationMinValidityMs: durationMs(raw.tls.rotationMinValidity),
      expiryWarningsMs: raw.tls.expiryWarnings.map(durationMs).sort((a, b) => b - a),
      clientInventoryWindowMs: durationMs(raw.tls.clientInventoryWindow),
    },
    listen: {
      https: parseListenAddress(raw.listen.https)!,
      http: raw.listen.http === undefined ? null : parseListenAddress(raw.listen.http),
      admin: raw.listen.admin === undefined ? null : parseListenAddress(raw.listen.admin),
    },
    workers: raw.workers === 'auto' ? availableParallelism() : raw.workers,
    trustedProxies,
    apiKeyHeader: raw.apiKeyHeader,
    ipAccess: ipRulesOf(raw.ipAccess),
    detector: { threshold: raw.detector.threshold, windowMs: durationMs(raw.detector.window), blockMs: durationMs(raw.detector.blockFor), allow: blockListOf(raw.detector.allow), webhook, fingerprint: raw.detector.fingerprint },
    dataDir,
    ca: { crlPath: raw.ca.crlPath ?? null },
    timeouts: {
      handshakeMs: durationMs(t.handshake),
      headersMs: durationMs(t.headers),
      requestMs: durationMs(t.request),
      idleMs: durationMs(t.idle),
      sendMs: durationMs(t.send),
      drainMs: durationMs(t.drain),
      upstreamConnectMs: durationMs(t.upstreamConnect),
      upstreamResponseMs: durationMs(t.upstreamResponse),
      upstreamIdleMs: durationMs(t.upstreamIdle),
    },
    log: { level: raw.log.level, access: ['stdout', 'stderr', 'off'].includes(raw.log.access) ? raw.log.access : file(raw.log.access) },
    limits: raw.limits,
    sites,
    hosts,
    defaultSite,
    identityHeaders: new Set(['x-client-cert', ...sites.map((s) => s.identityHeader)]),
  };
  return { config: deepFreeze(config), issues };
}

type Issue = (path: string, message: string) => void;

/** Addresses and CIDRs (validated by the schema) as a BlockList. */
// burst defaults to one second's worth (at least 1)
const rateLimitOf = (raw: { rps: number; burst?: number } | undefined): RateLimit | null => (raw ? { rps: raw.rps, burst: raw.burst ?? Math.max(1, Math.ceil(raw.rps)) } : null);

function ipRulesOf(raw: { allow?: string[]; deny?: string[] } | undefined): IpRules {
  return { allow: raw?.allow ? blockListOf(raw.allow) : null, deny: raw?.deny?.length ? blockListOf(raw.deny) : null };
}

function blockListOf(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [address, bits] = entry.split('/') as [string, string | undefined];
    const type = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(address, type);
    else list.addSubnet(address, Number(bits), type);
  }
  return list;
}

function provisionSite(raw: RawSite, index: number, at: string, file: (p: string) => string, dataDir: string, hasHttpListener: boolean, issue: Issue): Site {
  const hosts = raw.hosts.map((h) => normaliseSiteHost(h) as string);
  hosts.forEach((h, j) => {
    if (hosts.indexOf(h) !== j) issue(`${at}.hosts[${j}]`, `"${h}" is listed twice; remove the duplicate`);
  });

  const certificates: CertificatePair[] = [];
  const acmeEntry = raw.certificates.findIndex((c) => c.acme !== undefined);
  if (acmeEntry >= 0) {
    const acme = provisionAcme(raw, hosts, `${at}.certificates[${acmeEntry}]`, file, dataDir, hasHttpListener, issue);
    return finishSite(raw, index, at, hosts, acme?.served ? [acme.served] : [], acme?.source ?? null, file, issue);
  }
  raw.certificates.forEach((entry, j) => {
    let source = entry;
    const path = `${at}.certificates[${j}]`;
    if (source.internal) {
      if (source.cert !== undefined || source.key !== undefined) {
        issue(path, 'give either internal: true or cert: and key:, not both');
        return;
      }
      const files = internalCertificateFiles(dataDir, hosts[0] as string);
      if (!existsSync(files.certFile)) {
        issue(`${path}.internal`, `the built-in CA has not issued ${files.certFile} yet; portcullis start issues it (portcullis validate does not)`);
        return;
      }
      source = { cert: files.certFile, key: files.keyFile };
    }
    if (source.cert === undefined || source.key === undefined) {
      issue(path, `give both cert: (PEM chain, leaf first) and key: (PEM private key); ${source.cert === undefined ? 'cert' : 'key'} is missing`);
      return;
    }
    const loaded = loadCertificatePair(file(source.cert), file(source.key), 'server');
    if (!loaded.ok) {
      for (const p of loaded.problems) issue(`${path}.${p.field}`, p.message);
      return;
    }
    const kind = loaded.certificate.leaf.publicKey.asymmetricKeyType;
    const twin = certificates.find((c) => c.leaf.publicKey.asymmetricKeyType === kind);
    if (twin) {
      issue(path, `the site already has a ${twin.keyDescription} certificate (${twin.certFile}); list at most one ECDSA and one RSA certificate per site`);
      return;
    }
    certificates.push(loaded.certificate);
  });
  if (certificates.length === raw.certificates.length) {
    hosts.forEach((host, j) => {
      if (!certificates.some((c) => certificateCovers(c.leaf, host))) {
        const names = certificates.map((c) => c.leaf.subjectAltName ?? '(no SAN)').join('; ');
        issue(`${at}.hosts[${j}]`, `no certificate of this site covers "${host}" (they cover ${names}); add the name to a certificate or remove the host`);
      }
    });
  }
  return finishSite(raw, index, at, hosts, certificates, null, file, issue);
}

/**
 * An `acme` source: the certificate an ACME CA issued earlier, kept under
 * dataDir, is served when it is usable for every host; otherwise the site is
 * pending (no certificate, handshakes refused) until the ACME manager orders
 * one. A stored certificate that expired while the instance was down must
 * not keep it from starting, hence no config issue for it.
 */
function provisionAcme(
  raw: RawSite,
  hosts: readonly string[],
  path: string,
  file: (p: string) => string,
  dataDir: string,
  hasHttpListener: boolean,
  issue: Issue,
): { source: AcmeSource; served: CertificatePair | null } | null {
  const entry = raw.certificates.find((c) => c.acme !== undefined) as RawSite['certificates'][number];
  const acme = entry.acme as NonNullable<typeof entry.acme>;
  if (raw.certificates.length > 1 || entry.cert !== undefined || entry.key !== undefined || entry.internal) {
    issue(path, 'an acme source is the site\'s only certificate source; remove the other entries (or give those hosts their own site)');
    return null;
  }
  const wildcards = hosts.filter((h) => h.startsWith('*.'));
  if (wildcards.length > 0) {
    issue(`${path}.acme`, `ACME needs the dns-01 challenge for ${wildcards.join(', ')}, which Portcullis does not answer; list the names without wildcards, or serve them from files or internal: true in another site`);
    return null;
  }
  if (acme.challenge === 'http-01' && !hasHttpListener) {
    issue(`${path}.acme.challenge`, 'http-01 is answered by the plain-HTTP listener on port 80, which is not configured; add listen: {http: "0.0.0.0:80"} or use challenge: tls-alpn-01');
    return null;
  }
  let caPem: string | null = null;
  const caFile = acme.ca === undefined ? null : file(acme.ca);
  if (caFile) {
    try {
      caPem = readFileSync(caFile, 'utf8');
    } catch (err) {
      issue(`${path}.acme.ca`, `cannot read ${caFile} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); give the PEM CA certificate that signs the ACME server's own TLS certificate`);
      return null;
    }
    const read = certificatesIn(caPem, caFile);
    for (const problem of read.problems) issue(`${path}.acme.ca`, problem);
    if (read.problems.length > 0) return null;
    if (read.certificates.length === 0) {
      issue(`${path}.acme.ca`, `${caFile} holds no PEM certificate; give the CA certificate of the ACME server's TLS in PEM`);
      return null;
    }
  }
  const files = acmeCertificateFiles(dataDir, hosts[0] as string);
  let served: CertificatePair | null = null;
  let storedProblem: string | null = null;
  if (existsSync(files.certFile)) {
    const loaded = loadCertificatePair(files.certFile, files.keyFile, 'server');
    if (!loaded.ok) storedProblem = loaded.problems.map((p) => p.message).join('; ');
    else {
      const uncovered = hosts.filter((h) => !certificateCovers(loaded.certificate.leaf, h));
      if (uncovered.length > 0) storedProblem = `the stored certificate does not cover ${uncovered.join(', ')}`;
      else served = loaded.certificate;
    }
  }
  const source: AcmeSource = { email: acme.email, directory: acme.directory, caPem, challenge: acme.challenge, names: hosts, storedProblem };
  return { source, served };
}

function finishSite(raw: RawSite, index: number, at: string, hosts: string[], certificates: CertificatePair[], acme: AcmeSource | null, file: (p: string) => string, issue: Issue): Site {

  const hsts = `max-age=${raw.hsts.maxAge}${raw.hsts.includeSubDomains ? '; includeSubDomains' : ''}${raw.hsts.preload ? '; preload' : ''}`;
  if (raw.hsts.preload && (raw.hsts.maxAge < 31_536_000 || !raw.hsts.includeSubDomains)) {
    issue(`${at}.hsts.preload`, 'preload lists require maxAge of at least 31536000 and includeSubDomains: true; raise them or drop preload');
  }

  const clientAuth = raw.clientAuth ? provisionClientAuth(raw.clientAuth, `${at}.clientAuth`, file, issue) : null;
  const routes: Route[] = [];
  raw.routes.forEach((r, j) => {
    const path = `${at}.routes[${j}]`;
    if (raw.routes.findIndex((o) => o.path === r.path) !== j) issue(`${path}.path`, `"${r.path}" is already used by another route of this site; merge them`);
    const upstreams = provisionUpstreams(r, path, file, issue);
    if (!raw.clientAuth && (r.clientCert !== undefined || r.allow !== undefined)) {
      issue(`${path}.${r.clientCert !== undefined ? 'clientCert' : 'allow'}`, 'client certificates need clientAuth on the site; add clientAuth: {mode: optional, ca: [your-client-ca.pem]}');
    }
    // a site that requires certificates requires them on every route; an optional site defaults to required
    const clientCert = raw.clientAuth ? (raw.clientAuth.mode === 'require' ? 'required' : (r.clientCert ?? 'required')) : null;
    if (r.allow && clientCert === 'optional') issue(`${path}.allow`, 'an allow-list admits only certain certificates, so it needs clientCert: required (anonymous clients could never match it)');
    routes.push({ index: j, path: r.path, segmentBoundary: !r.path.endsWith('/'), upstreams, clientCert, allow: r.allow ? compileAllowList(r.allow) : null, apiKeys: r.apiKeys, rateLimit: rateLimitOf(r.rateLimit ?? raw.rateLimit) });
  });
  routes.sort((a, b) => b.path.length - a.path.length);

  const identityHeader = (raw.clientAuth?.forwardHeader ?? 'x-client-cert').toLowerCase();
  return { id: hosts[0] as string, index, hosts, isDefault: raw.default, certificates, acme, hsts, clientAuth, identityHeader, routes, ipAccess: ipRulesOf(raw.ipAccess) };
}

/**
 * The certificates of a CA file, each parsed and its public key decoded; a
 * file cut off inside a block, or a certificate that does not decode, is a
 * problem naming the file (never a silently shorter bundle). The caller says
 * what an empty file should have held.
 */
function certificatesIn(text: string, file: string): { certificates: { pem: string; cert: X509Certificate }[]; problems: string[] } {
  let blocks;
  try {
    blocks = pemBlocks(text, file).filter((b) => b.label === 'CERTIFICATE');
  } catch (err) {
    if (err instanceof PemError) return { certificates: [], problems: [err.message] };
    throw err;
  }
  const certificates: { pem: string; cert: X509Certificate }[] = [];
  const problems: string[] = [];
  for (const [i, b] of blocks.entries()) {
    const decoded = decodeCertificate(b.pem);
    if (decoded.ok) certificates.push({ pem: b.pem, cert: decoded.cert });
    else problems.push(`certificate #${i + 1} in ${file} ${decoded.problem}; write the file again from its source`);
  }
  return { certificates, problems };
}

function provisionClientAuth(raw: NonNullable<RawSite['clientAuth']>, at: string, file: (p: string) => string, issue: Issue): ClientAuth {
  const caPem: string[] = [];
  const caCerts: X509Certificate[] = [];
  // a CA entry with a problem leaves the list incomplete: checks against it would only add follow-on noise
  let caListComplete = true;
  const caIssue = (k: number, message: string) => {
    caListComplete = false;
    issue(`${at}.ca[${k}]`, message);
  };
  raw.ca.forEach((p, k) => {
    const caFile = file(p);
    let text: string;
    try {
      text = readFileSync(caFile, 'utf8');
    } catch (err) {
      caIssue(k, `cannot read ${caFile} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); give the CA certificate file that issues your client certificates`);
      return;
    }
    const read = certificatesIn(text, caFile);
    for (const problem of read.problems) caIssue(k, problem);
    if (read.certificates.length === 0 && read.problems.length === 0) caIssue(k, `${caFile} holds no PEM certificate; give the client CA certificate in PEM`);
    for (const { pem, cert } of read.certificates) {
      if (!cert.ca) {
        caIssue(k, `${caFile} holds ${cert.subject.split('\n').join(', ')}, which is not a CA certificate; list the CA that issued the client certificates, not a client certificate`);
        continue;
      }
      caPem.push(pem);
      caCerts.push(cert);
    }
  });
  // OpenSSL accepts a chain only up to a self-signed root in the list: an intermediate
  // listed without its issuers would silently admit nobody
  if (caListComplete) {
    caCerts.forEach((ca) => {
      let cert = ca;
      for (let hops = 0; cert.subject !== cert.issuer && hops < 10; hops++) {
        const issuer = caCerts.find((c) => c.subject === cert.issuer && cert.verify(c.publicKey));
        if (!issuer) {
          issue(
            `${at}.ca`,
            `${cert.subject.split('\n').join(', ')} is issued by ${cert.issuer.split('\n').join(', ')}, which is not listed; list the root CA too (OpenSSL needs the whole path to a root). To admit only one intermediate's clients, add an allow-list to the routes`,
          );
          return;
        }
        cert = issuer;
      }
    });
  }
  if (raw.refuseAt === 'handshake' && raw.mode !== 'require') issue(`${at}.refuseAt`, 'refusing in the handshake needs mode: require (with optional, routes decide after the handshake); set mode: require, or remove refuseAt');
  const revocation = provisionRevocation(raw, at, file, caListComplete ? caCerts : null, issue);
  const key = createHash('sha256')
    .update([raw.mode, raw.refuseAt, raw.verifyDepth, ...caCerts.map((c) => c.fingerprint256), JSON.stringify(revocation)].join('|'))
    .digest('hex')
    .slice(0, 16);
  return { mode: raw.mode, refuseAt: raw.refuseAt, caFiles: raw.ca.map(file), caPem, caCerts, verifyDepth: raw.verifyDepth, revocation, key };
}

/**
 * CRL files are read here so a typo is a config error, not a silent
 * "revocation unavailable" later; their signatures and freshness are checked
 * by the running instance, which re-reads them when they change.
 */
function provisionRevocation(raw: NonNullable<RawSite['clientAuth']>, at: string, file: (p: string) => string, caCerts: readonly X509Certificate[] | null, issue: Issue): RevocationPolicy | null {
  if (raw.crl === undefined && !raw.ocsp) {
    if (raw.ocspResponder !== undefined) issue(`${at}.ocspResponder`, 'ocspResponder is used only with ocsp: true; add ocsp: true or remove it');
    return null;
  }
  if (raw.ocspResponder !== undefined && !raw.ocsp) issue(`${at}.ocspResponder`, 'ocspResponder is used only with ocsp: true; add ocsp: true or remove it');
  const crls = (raw.crl ?? []).flatMap((entry, k): RevocationPolicy['crls'] => {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(entry)) {
      if (!/^https?:\/\//i.test(entry)) {
        issue(`${at}.crl[${k}]`, `${entry} is not an http(s) URL; CRLs are fetched over http or https only (or give a file path)`);
        return [];
      }
      try {
        return [{ kind: 'url', location: new URL(entry).href }];
      } catch {
        issue(`${at}.crl[${k}]`, `${entry} is not a valid URL`);
        return [];
      }
    }
    const path = file(entry);
    try {
      const crl = parseCrl(readFileSync(path), path);
      const issuerName = Buffer.from(crl.issuerName.toArrayBuffer());
      // null: clientAuth.ca has a problem of its own, reported already; its CRL cannot be judged against a partial list
      const issuerKnown = caCerts === null || caCerts.some((c) => Buffer.from(new x509.X509Certificate(c.raw).subjectName.toArrayBuffer()).equals(issuerName));
      if (!issuerKnown) issue(`${at}.crl[${k}]`, `${path} is issued by ${crl.issuer}, which is not in clientAuth.ca; list the CA that signs it in clientAuth.ca, or remove the CRL`);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      issue(`${at}.crl[${k}]`, err instanceof CrlError ? err.message : `cannot read ${path} (${code ?? (err as Error).message}); give the CRL file (PEM or DER) of your client CA`);
      return [];
    }
    return [{ kind: 'file', location: path }];
  });
  return { crls, distributionPoints: raw.crl !== undefined, ocsp: raw.ocsp, ocspResponder: raw.ocspResponder ?? null, onUnavailable: raw.onRevocationUnavailable };
}

function provisionUpstreams(r: RawRoute, at: string, file: (p: string) => string, issue: Issue): UpstreamTarget[] {
  const single = typeof r.upstream === 'string';
  const urls = single ? [r.upstream as string] : (r.upstream as string[]);
  const pathOf = (k: number) => (single ? `${at}.upstream` : `${at}.upstream[${k}]`);
  const builtin = urls.filter((u) => u.startsWith('builtin:'));
  if (builtin.length > 0 && urls.length > 1) issue(`${at}.upstream`, `${builtin[0]} cannot be mixed with other upstreams; give it a route of its own`);
  const anyHttps = urls.some((u) => u.startsWith('https:'));
  if (r.upstreamTls && !anyHttps) issue(`${at}.upstreamTls`, 'upstreamTls applies to https:// upstreams only; use https:// URLs or remove upstreamTls');
  const tls = anyHttps ? provisionUpstreamTls(r, `${at}.upstreamTls`, file, issue) : null;

  return urls.map((u, k) => {
    if (u.startsWith('builtin:')) return { kind: 'builtin', name: 'whoami', origin: u };
    const url = new URL(u);
    if (urls.indexOf(u) !== k) issue(pathOf(k), `${u} is listed twice; remove the duplicate`);
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const https = url.protocol === 'https:';
    return { kind: 'http', origin: url.origin, host, serverName: https ? (tls?.serverName ?? (isIP(host) ? undefined : host)) : undefined, tls: https ? tls : null };
  });
}

function provisionUpstreamTls(r: RawRoute, at: string, file: (p: string) => string, issue: Issue): UpstreamTls {
  const opts = r.upstreamTls ?? {};
  const ca = [...rootCertificates];
  if (opts.ca !== undefined) {
    const caFile = file(opts.ca);
    let text: string | null = null;
    try {
      text = readFileSync(caFile, 'utf8');
    } catch (err) {
      issue(`${at}.ca`, `cannot read ${caFile} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); give the PEM CA certificate file of the upstream's TLS`);
    }
    if (text !== null) {
      const read = certificatesIn(text, caFile);
      for (const problem of read.problems) issue(`${at}.ca`, problem);
      if (read.certificates.length === 0 && read.problems.length === 0) issue(`${at}.ca`, `${caFile} holds no PEM certificate; give the upstream's CA certificate in PEM`);
      ca.push(...read.certificates.map((c) => c.pem));
    }
  }
  let clientCertificate: CertificatePair | undefined;
  if ((opts.cert === undefined) !== (opts.key === undefined)) {
    issue(at, `give both cert: and key: for the client certificate presented to the upstream; ${opts.cert === undefined ? 'cert' : 'key'} is missing`);
  } else if (opts.cert !== undefined && opts.key !== undefined) {
    const loaded = loadCertificatePair(file(opts.cert), file(opts.key), 'client');
    if (loaded.ok) clientCertificate = loaded.certificate;
    else for (const p of loaded.problems) issue(`${at}.${p.field}`, p.message);
  }
  return { ca, serverName: opts.serverName?.toLowerCase(), clientCertificate };
}

/** Freezes plain objects and arrays all the way down; class instances (certificates, tables) keep their own encapsulation. */
function deepFreeze<T>(value: T): T {
  if (value === null || typeof value !== 'object' || Object.isFrozen(value)) return value;
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== Array.prototype) return value;
  Object.freeze(value);
  for (const v of Object.values(value as object)) deepFreeze(v);
  return value;
}
