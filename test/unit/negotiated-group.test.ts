import assert from 'node:assert/strict';
import { Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { groupId, runtimeAdvice, tlsProfiles, type GroupName, type TlsProfile } from '../../src/config/index.js';
import { parseClientHello } from '../../src/edge/client-hello.js';
import { summarizeHello, type HelloSummary } from '../../src/edge/fingerprints.js';
import { negotiatedGroup } from '../../src/tls/negotiated-group.js';

/**
 * The group rule of negotiated-group.ts for both OpenSSL lines, whatever this
 * runtime is (the end-to-end test checks it against real clients on each):
 * the profiles as they are with ML-KEM and without it.
 */
const withMlKem: TlsProfile = { ...tlsProfiles.intermediate, groups: [['X25519MLKEM768'], ['X25519', 'P-256', 'P-384']] };
const classical: TlsProfile = { ...tlsProfiles.intermediate, groups: [['X25519', 'P-256', 'P-384']] };

/** What the edge would have read from a ClientHello listing `groups` and sending shares for `shares`. */
function offer(groups: readonly GroupName[], shares: readonly GroupName[]): HelloSummary {
  return { sni: null, ja4: '', ja3: '', weakness: null, offered: 'TLSv1.3', acceptedAt: 0, groups: groups.map(groupId), keyShares: shares.map(groupId), postQuantum: false };
}

describe('negotiatedGroup', () => {
  test('OpenSSL ≥ 3.5: the hybrid for a client that lists it, with or without a share; else the share it sent in the classical tuple, our order among two', () => {
    const group = (groups: readonly GroupName[], shares: readonly GroupName[]) => negotiatedGroup(offer(groups, shares), 'TLSv1.3', withMlKem, true);
    assert.equal(group(['X25519MLKEM768', 'X25519', 'P-256'], ['X25519MLKEM768', 'X25519']), 'X25519MLKEM768');
    assert.equal(group(['X25519', 'X25519MLKEM768'], ['X25519']), 'X25519MLKEM768', 'asked for a hybrid share in a HelloRetryRequest');
    assert.equal(group(['X25519', 'P-256'], ['X25519']), 'X25519');
    assert.equal(group(['P-384', 'P-256'], ['P-384']), 'P-384', 'no HelloRetryRequest for a share in the tuple');
    assert.equal(group(['P-384', 'P-256'], ['P-384', 'P-256']), 'P-256');
    assert.equal(group(['P-521', 'P-384'], []), 'P-384');
    assert.equal(group(['P-521', 'X448'], ['P-521']), null, 'nothing in common: the handshake fails');
  });

  test("OpenSSL 3.0: the client's first share we support, else our first group it lists", () => {
    const group = (groups: readonly GroupName[], shares: readonly GroupName[]) => negotiatedGroup(offer(groups, shares), 'TLSv1.3', classical, false);
    assert.equal(group(['X25519MLKEM768', 'X25519'], ['X25519MLKEM768', 'X25519']), 'X25519');
    assert.equal(group(['P-384', 'P-256'], ['P-384', 'P-256']), 'P-384', 'the client order decides among shares');
    assert.equal(group(['X25519MLKEM768', 'P-256', 'X25519'], ['X25519MLKEM768']), 'X25519', 'our order in the HelloRetryRequest');
  });

  test('TLS 1.2: our first classical group the client lists, the hybrid never', () => {
    for (const [profile, withTuples] of [[withMlKem, true], [classical, false]] as const) {
      assert.equal(negotiatedGroup(offer(['X25519MLKEM768', 'P-384', 'P-256'], []), 'TLSv1.2', profile, withTuples), 'P-256');
      assert.equal(negotiatedGroup(offer([], []), 'TLSv1.2', profile, withTuples), 'X25519', 'a client without supported_groups takes our first');
    }
  });

  test('null without a ClientHello', () => {
    assert.equal(negotiatedGroup(null, 'TLSv1.3', withMlKem, true), null);
  });
});

describe('the ClientHellos of real clients', () => {
  const fixtures = new URL('../fixtures/client-hellos/', import.meta.url);
  const summaryOf = (file: string): HelloSummary => {
    const r = parseClientHello(readFileSync(new URL(file, fixtures)));
    assert.equal(r.kind, 'hello');
    return summarizeHello(new Socket(), (r as Extract<typeof r, { kind: 'hello' }>).hello, 0);
  };

  test("Chromium's carries a post-quantum key share and gets X25519MLKEM768 where the runtime has it, X25519 where not", () => {
    const chromium = summaryOf('chromium.bin');
    assert.equal(chromium.postQuantum, true);
    assert.equal(negotiatedGroup(chromium, 'TLSv1.3', withMlKem, true), 'X25519MLKEM768');
    assert.equal(negotiatedGroup(chromium, 'TLSv1.3', classical, false), 'X25519');
  });

  test('OpenSSL 3.0, curl, GnuTLS 3.7 and Go 1.19 carry none; their X25519 share is taken, except that OpenSSL 3.0 takes the P-256 share GnuTLS sends first', () => {
    for (const [file, onOpenSsl30] of [
      ['openssl-s-client.bin', 'X25519'],
      ['curl.bin', 'X25519'],
      ['go-crypto-tls.bin', 'X25519'],
      // shares for P-256 and X25519, in that order
      ['gnutls-cli.bin', 'P-256'],
    ] as const) {
      const summary = summaryOf(file);
      assert.equal(summary.postQuantum, false, file);
      assert.equal(negotiatedGroup(summary, 'TLSv1.3', withMlKem, true), 'X25519', file);
      assert.equal(negotiatedGroup(summary, 'TLSv1.3', classical, false), onOpenSsl30, file);
    }
  });
});

describe('runtimeAdvice', () => {
  test('nothing on a runtime with ML-KEM', () => {
    assert.equal(runtimeAdvice('v24.22.3', true, '3.5.9'), null);
  });

  test('without ML-KEM: says so and what to run; on Node 20 also that it is past its end of life', () => {
    const node20 = runtimeAdvice('v20.20.2', false, '3.0.19') as string;
    assert.match(node20, /^Node v20\.20\.2 bundles OpenSSL 3\.0\.19, which has no ML-KEM: handshakes use classical key exchange only .*; run Portcullis on Node 24 LTS \(or Node 22\.20 or later\)/);
    assert.match(node20, /Node 20 reached end of life in April 2026/);
    const node22 = runtimeAdvice('v22.12.0', false, '3.0.15') as string;
    assert.match(node22, /no ML-KEM/);
    assert.doesNotMatch(node22, /end of life/);
  });
});
