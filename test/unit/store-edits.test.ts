import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseDenyEdit, parseKeyEdit } from '../../src/supervisor/store-edits.js';

/*
 * What a command sends an instance of a cluster about its change (`edit` of
 * a deny-list or api-keys control request): read strictly, so that a
 * confused or hostile local client cannot slip anything else into the
 * cluster's stores.
 */

const fingerprint = `sha256:${'ab'.repeat(32)}`;
const at = '2025-01-02T03:04:05Z';
const record = { id: '0123456789ab', name: 'partner', hash: 'cd'.repeat(32), routes: null, createdAt: at, expiresAt: null, revokedAt: at, bindCert: null, bindUri: null, rotatedTo: null };

describe('the edit of a control request', () => {
  test('a deny add or remove is read, normalised, as the entry it names', () => {
    assert.deepEqual(parseDenyEdit({ add: { fingerprint, note: 'stolen', addedAt: at } }), { add: { fingerprint: `sha256:${'AB:'.repeat(31)}AB`, note: 'stolen', addedAt: '2025-01-02T03:04:05.000Z' } });
    assert.deepEqual(parseDenyEdit({ remove: { serial: '0x0a1b', issuer: 'CN=Clients CA', note: null, addedAt: at } }), { remove: { serial: 'A1B', issuer: 'CN=Clients CA', note: null, addedAt: '2025-01-02T03:04:05.000Z' } });
  });

  test('API key records are read as the store reads them', () => {
    assert.deepEqual(parseKeyEdit({ keys: [record] }), { keys: [record] });
  });

  const refused: [string, unknown, RegExp][] = [
    ['no operation', {}, /^edit must be \{"add" \| "remove"/],
    ['two operations', { add: { fingerprint, note: null, addedAt: at }, remove: { fingerprint, note: null, addedAt: at } }, /^edit must be/],
    ['another operation', { replace: [] }, /^edit must be/],
    ['a field a deny entry has not', { add: { fingerprint, note: null, addedAt: at, everyone: true } }, /^edit\.add\.everyone is not a field of a deny entry/],
    ['a malformed fingerprint', { remove: { fingerprint: 'AB', note: null, addedAt: at } }, /^edit\.remove: --fingerprint AB is not a SHA-256 fingerprint/],
    ['no time', { add: { fingerprint, note: null } }, /^edit\.add\.addedAt must be an ISO time$/],
  ];
  for (const [what, raw, message] of refused) {
    test(`a deny edit with ${what} is refused, naming the field`, () => {
      const parsed = parseDenyEdit(raw);
      assert.equal(typeof parsed, 'string');
      assert.match(parsed as string, message);
    });
  }

  const refusedKeys: [string, unknown, RegExp][] = [
    ['no list', { keys: record }, /^edit must be \{"keys"/],
    ['too many records', { keys: Array(5).fill(record) }, /^edit must be \{"keys": \[at most 4/],
    ['another field', { keys: [], delete: ['0123456789ab'] }, /^edit must be/],
    ['a field a record has not', { keys: [{ ...record, admin: true }] }, /^edit\.keys\[0\]\.admin is not a field of an API key record$/],
    ['a path for an id', { keys: [{ ...record, id: '../../etc' }] }, /^edit\.keys\[0\]: id is not 12 hex digits$/],
    ['a key instead of its hash', { keys: [{ ...record, hash: 'pck_0123456789ab_secret' }] }, /^edit\.keys\[0\]: hash is not a hex SHA-256$/],
    ['an overlong name', { keys: [{ ...record, name: 'x'.repeat(1025) }] }, /^edit\.keys\[0\]\.name is longer than 1024 characters$/],
  ];
  for (const [what, raw, message] of refusedKeys) {
    test(`a key edit with ${what} is refused, naming the field`, () => {
      const parsed = parseKeyEdit(raw);
      assert.equal(typeof parsed, 'string');
      assert.match(parsed as string, message);
    });
  }
});
