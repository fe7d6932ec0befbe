import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ClientHello } from '../../src/edge/client-hello.js';
import type { Socket } from 'node:net';
import { ja3, ja4, summarizeHello } from '../../src/edge/fingerprints.js';

const grease = 0x3a3a;

/**
 * A Chrome 143 ClientHello as browserleaks.com reported it (its field lists,
 * JA4 t13d1516h2_8daaf6152771_d8a2da3f94cd and JA3 98487aa1…): values
 * computed by another implementation, so this checks ours independently. GREASE
 * values are added where Chrome sends them; both fingerprints must ignore them.
 */
const chrome: ClientHello = {
  recordVersion: 0x0301,
  legacyVersion: 771,
  supportedVersions: [grease, 0x0304, 0x0303],
  cipherSuites: [grease, 4865, 4866, 4867, 49195, 49199, 49196, 49200, 52393, 52392, 49171, 49172, 156, 157, 47, 53],
  extensions: [grease, 45, 51, 16, 65037, 23, 17613, 0, 11, 10, 43, 65281, 35, 18, 5, 13, 27, grease],
  serverName: 'tls.browserleaks.com',
  alpn: ['h2', 'http/1.1'],
  groups: [grease, 4588, 29, 23, 24],
  keyShares: [grease, 4588, 29],
  signatureAlgorithms: [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601],
  ecPointFormats: [0],
};

describe('ClientHello fingerprints', () => {
  test('JA4 and JA3 of a Chrome ClientHello match the values another implementation published', () => {
    assert.equal(ja4(chrome), 't13d1516h2_8daaf6152771_d8a2da3f94cd');
    const j = ja3(chrome);
    assert.equal(j.text, '771,4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-53,45-51-16-65037-23-17613-0-11-10-43-65281-35-18-5-13-27,4588-29-23-24,0');
    assert.equal(j.hash, '98487aa16281980e7d1120d399efb6a4');
  });

  test('JA4 part a: no SNI is "i", no ALPN is "00", a TLS 1.0-only client is "10", a non-alphanumeric ALPN uses its hex', () => {
    const old: ClientHello = { ...chrome, supportedVersions: [], legacyVersion: 0x0301, serverName: null, alpn: [] };
    assert.match(ja4(old), /^t10i151600_/);
    assert.match(ja4({ ...chrome, alpn: ['h2!'] }), /^t13d1516(6)(1)_/, 'first hex digit of "h" (0x68) and last of "!" (0x21)');
  });

  test('JA4 parts b and c are zeros without ciphers or extensions, and c leaves out the separator without signature algorithms', () => {
    assert.match(ja4({ ...chrome, cipherSuites: [], extensions: [0x0000, 0x0010] }), /_000000000000_000000000000$/);
    const withoutSigalgs = ja4({ ...chrome, signatureAlgorithms: [] });
    assert.notEqual(withoutSigalgs.split('_')[2], ja4(chrome).split('_')[2]);
  });

  test('a connection gets the fingerprints of its own ClientHello, whichever ClientHellos of the same or another shape came before', () => {
    const summary = (hello: ClientHello) => summarizeHello({} as Socket, hello, 0);
    // each input of JA3 or JA4 changed on its own: every variant is fingerprinted as itself, also the second time
    const variants: ClientHello[] = [
      chrome,
      { ...chrome, cipherSuites: [...chrome.cipherSuites].reverse() },
      { ...chrome, extensions: chrome.extensions.filter((e) => e !== 27) },
      { ...chrome, supportedVersions: [0x0303] },
      { ...chrome, legacyVersion: 0x0301 },
      { ...chrome, serverName: null },
      { ...chrome, alpn: ['http/1.1'] },
      { ...chrome, signatureAlgorithms: chrome.signatureAlgorithms.slice(1) },
      { ...chrome, groups: [29, 23] },
      { ...chrome, ecPointFormats: [0, 1] },
    ];
    for (let round = 0; round < 2; round++) {
      for (const hello of variants) {
        const s = summary(hello);
        assert.equal(s.ja4, ja4(hello));
        assert.equal(s.ja3, ja3(hello).hash);
      }
    }
    assert.equal(new Set(variants.map((h) => `${summary(h).ja4} ${summary(h).ja3}`)).size, variants.length, 'every variant has fingerprints of its own');
  });
});
