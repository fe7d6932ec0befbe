/**
 * The soak's certificates (made with the openssl CLI through the test PKI
 * helper, in its own temp folder) and its two configs, which differ in one
 * route and in the api site's certificate so that every reload does real
 * work: a new SecureContext for new handshakes, a new route table, new
 * upstream pools.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TestPki, type Leaf } from '../../test/helpers/pki.js';

export const apiHost = 'api.soak.test';
export const mtlsHost = 'mtls.soak.test';
/** Header timeout of the soak config: bounds how long a slowloris client holds a connection. */
export const headersTimeoutMs = 10_000;

export interface SoakPki {
  readonly pki: TestPki;
  /** The root every client trusts for the proxy's certificates. */
  readonly serverCaFile: string;
  /** The api site's certificate in config A and in config B. */
  readonly apiA: Leaf;
  readonly apiB: Leaf;
  readonly mtlsServer: Leaf;
  /** Issued by the client CA the mTLS site trusts. */
  readonly goodClient: Leaf;
  /** Issued by the same CA, expired yesterday. */
  readonly expiredClient: Leaf;
  /** Valid, with the clientAuth usage, from a CA the site does not trust. */
  readonly foreignClient: Leaf;
  readonly clientCaFile: string;
}

const day = 86_400_000;

export function makePki(): SoakPki {
  const pki = new TestPki();
  const serverRoot = pki.root('soak-server-root');
  const clientRoot = pki.root('soak-client-root');
  const foreignRoot = pki.root('soak-foreign-root');
  return {
    pki,
    serverCaFile: serverRoot.certFile,
    apiA: pki.leaf('soak-api-a', serverRoot, { dns: [apiHost] }),
    apiB: pki.leaf('soak-api-b', serverRoot, { dns: [apiHost] }),
    mtlsServer: pki.leaf('soak-mtls', serverRoot, { dns: [mtlsHost] }),
    goodClient: pki.leaf('soak-good-client', clientRoot, { eku: 'clientAuth', uris: ['spiffe://soak.test/good'] }),
    expiredClient: pki.leaf('soak-expired-client', clientRoot, { eku: 'clientAuth', notBefore: new Date(Date.now() - 30 * day), notAfter: new Date(Date.now() - day) }),
    foreignClient: pki.leaf('soak-foreign-client', foreignRoot, { eku: 'clientAuth' }),
    clientCaFile: clientRoot.certFile,
  };
}

export type Variant = 'a' | 'b';

/** The sha256 fingerprint (as Node prints it) of a leaf, to tell which one a handshake got. */
export function fingerprintOf(leaf: Leaf): string {
  return new X509Certificate(readFileSync(leaf.certFile)).fingerprint256;
}

/**
 * Config A serves apiA and has the route /gen-a/; config B serves apiB and
 * has /gen-b/. Everything good clients use (/api/ and the mTLS site) is in
 * both, so a reload must be invisible to them.
 */
export function configText(variant: Variant, dir: string, pki: SoakPki, upstreamOrigin: string): string {
  const api = variant === 'a' ? pki.apiA : pki.apiB;
  return `# soak config ${variant.toUpperCase()} (scripts/soak.ts)
dataDir: ${join(dir, 'state')}
listen: { https: "127.0.0.1:0" }
timeouts: { headers: ${headersTimeoutMs / 1000}s }
log: { level: info, access: ${join(dir, 'access.log')} }
sites:
  - hosts: [${apiHost}]
    certificates: [{ cert: ${api.chainFile}, key: ${api.keyFile} }]
    routes:
      - { path: /api/, upstream: "${upstreamOrigin}" }
      - { path: /gen-${variant}/, upstream: "${upstreamOrigin}" }
  - hosts: [${mtlsHost}]
    certificates: [{ cert: ${pki.mtlsServer.chainFile}, key: ${pki.mtlsServer.keyFile} }]
    clientAuth: { mode: require, ca: [${pki.clientCaFile}] }
    routes:
      - { path: /, upstream: "${upstreamOrigin}" }
`;
}

/** Replaces the config file in one rename, as deployment tooling would, so a reload never reads half a file. */
export function writeConfig(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}
