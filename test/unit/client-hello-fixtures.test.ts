import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { parseClientHello, type ClientHello } from '../../src/edge/client-hello.js';
import { ja3, ja4 } from '../../src/edge/fingerprints.js';
import { weakOfferOf } from '../../src/edge/weak-offer.js';

/**
 * ClientHellos of real clients (openssl, curl, gnutls-cli, Go, Chromium),
 * captured by scripts/capture-client-hellos.ts. Their JA3 is the one
 * Wireshark's tshark computed, so these check our parser and fingerprints
 * against another implementation; their JA4 is ours, cross-checked by the
 * script against one computed from tshark's dissection. Regenerate with the
 * script, never edit by hand.
 */
interface FixtureEntry {
  readonly file: string;
  readonly client: string;
  readonly ja4: string;
  readonly ja3: string;
  readonly ja3Text: string;
  readonly sni: string | null;
  readonly capturedAt: string;
}

const fixtures = new URL('../fixtures/client-hellos/', import.meta.url);
const entries = JSON.parse(readFileSync(new URL('index.json', fixtures), 'utf8')) as FixtureEntry[];

function helloOf(bytes: Buffer): ClientHello {
  const r = parseClientHello(bytes);
  if (r.kind !== 'hello') assert.fail(`expected a ClientHello, parsed as ${JSON.stringify(r)}`);
  return r.hello;
}

describe('ClientHellos of real clients', () => {
  test('there are fixtures from at least five clients, with and without SNI', () => {
    assert.ok(entries.length >= 5, `${entries.length} fixtures`);
    assert.ok(entries.some((e) => e.sni === null));
    assert.ok(entries.some((e) => e.sni !== null));
  });

  for (const entry of entries) {
    const bytes = readFileSync(new URL(entry.file, fixtures));

    describe(`${entry.file} (${entry.client})`, () => {
      test('parses as a ClientHello with the recorded server name', () => {
        assert.equal(helloOf(bytes).serverName, entry.sni);
      });

      test('has the JA3 text and hash tshark computed', () => {
        const j = ja3(helloOf(bytes));
        assert.equal(j.text, entry.ja3Text);
        assert.equal(j.hash, entry.ja3);
      });

      test('has the recorded JA4', () => {
        assert.equal(ja4(helloOf(bytes)), entry.ja4);
      });

      test('is classified weak only when it offers no TLS 1.3 (every client here offers acceptable suites)', () => {
        assert.equal(weakOfferOf(helloOf(bytes)), entry.ja4.startsWith('t13') ? null : 'no_tls13');
      });

      for (const segmentBytes of [1, 7, 100]) {
        test(`is incomplete, asking for more than it has, until the last of its ${segmentBytes}-byte TCP segments arrives`, () => {
          let received = Buffer.alloc(0);
          for (let offset = 0; offset < bytes.length; offset += segmentBytes) {
            received = Buffer.concat([received, bytes.subarray(offset, offset + segmentBytes)]);
            if (received.length === bytes.length) break;
            const r = parseClientHello(received);
            assert.equal(r.kind, 'incomplete', `after ${received.length} of ${bytes.length} bytes`);
            if (r.kind === 'incomplete') assert.ok(r.need > received.length && r.need <= bytes.length, `need ${r.need} after ${received.length} of ${bytes.length} bytes`);
          }
          const whole = helloOf(received);
          assert.equal(whole.serverName, entry.sni);
          assert.equal(ja4(whole), entry.ja4);
          assert.equal(ja3(whole).hash, entry.ja3);
        });
      }
    });
  }
});
