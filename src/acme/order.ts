import { generateKeyPairSync } from 'node:crypto';
import acme from 'acme-client';
import type { AcmeSource } from '../config/index.js';
import { acmeAccountKeys, type StateBackend } from '../state/index.js';
import { getJson } from './acme-http.js';
import type { ChallengeBoard } from './challenges.js';

/** The account key for the source's directory and email, created once (ECDSA P-256, 0600) and reused by every later order. */
async function accountOf(state: StateBackend, source: AcmeSource): Promise<{ key: Buffer; url: string | null; keys: { key: string; url: string } }> {
  const keys = acmeAccountKeys(source.directory, source.email);
  return state.withLock(keys.key, async () => {
    let key = await state.read(keys.key);
    if (!key) {
      key = await acme.crypto.createPrivateEcdsaKey('P-256');
      await state.write(keys.key, key, { secret: true });
    }
    const url = (await state.read(keys.url))?.toString('utf8').trim() || null;
    return { key, url, keys };
  });
}

/**
 * One order for the source's names (run it inside `withCa` with the source's CA): account (registered with the email and
 * the terms of service agreed on first use), a fresh ECDSA P-256 key and CSR,
 * the configured challenge answered through `board`, the certificate
 * downloaded. The caller holds the per-domain lock and keeps the result.
 */
export async function orderCertificate(source: AcmeSource, state: StateBackend, board: ChallengeBoard): Promise<{ certPem: string; keyPem: string }> {
  await getJson(source.directory);
  const account = await accountOf(state, source);
  const client = new acme.Client({ directoryUrl: source.directory, accountKey: account.key, ...(account.url ? { accountUrl: account.url } : {}) });
  const keyPem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const [, csr] = await acme.crypto.createCsr({ commonName: source.names[0] as string, altNames: [...source.names] }, keyPem);
  const certPem = await client.auto({
    csr,
    email: source.email,
    termsOfServiceAgreed: true,
    challengePriority: [source.challenge],
    // acme-client's own pre-check resolves the names with this machine's DNS; the CA's validation is what counts
    skipChallengeVerification: true,
    challengeCreateFn: async (authz, challenge, keyAuthorization) => {
      if (challenge.type === 'http-01') return board.addHttp(challenge.token, keyAuthorization);
      const [key, cert] = await acme.crypto.createAlpnCertificate(authz, keyAuthorization);
      return board.addAlpn(authz.identifier.value, cert.toString(), key.toString());
    },
    challengeRemoveFn: async (authz, challenge) => (challenge.type === 'http-01' ? board.remove('http', challenge.token) : board.remove('alpn', authz.identifier.value)),
  });
  if (!account.url) await state.write(account.keys.url, client.getAccountUrl());
  return { certPem, keyPem };
}
