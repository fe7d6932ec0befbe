import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HostTable } from '../../src/config/host-table.js';
import { hasDuplicateHost, hostFromAuthority, normaliseSiteHost } from '../../src/config/addresses.js';

test('matches exact names before one-label wildcards and never deeper', () => {
  const table = new HostTable<string>();
  assert.ok(table.add('api.test', 'exact'));
  assert.ok(table.add('*.api.test', 'wild'));
  assert.ok(!table.add('api.test', 'again'), 'a taken name is refused');
  assert.equal(table.lookup('api.test'), 'exact');
  assert.equal(table.lookup('a.api.test'), 'wild');
  assert.equal(table.lookup('a.b.api.test'), undefined);
  assert.equal(table.lookup('xapi.test'), undefined);
  assert.equal(table.lookup('test'), undefined);
});

test('reads the host of a Host header and refuses malformed ones', () => {
  const cases: [string, string | null][] = [
    ['API.Test:8443', 'api.test'],
    ['api.test.', 'api.test'],
    ['127.0.0.1:443', '127.0.0.1'],
    ['[::1]:8443', '::1'],
    ['[::1]', '::1'],
    ['user@api.test', null],
    ['api.test:port', null],
    ['api.test:8443:1', null],
    ['api test', null],
    ['[::1', null],
    ['[nothex]:1', null],
    ['', null],
    ['a\\b.test', null],
    ['a/b.test', null],
  ];
  for (const [input, host] of cases) assert.equal(hostFromAuthority(input), host, input);
});

test('accepts DNS names, IPs and one-label wildcards as site hosts', () => {
  assert.equal(normaliseSiteHost('API.test'), 'api.test');
  assert.equal(normaliseSiteHost('*.api.test'), '*.api.test');
  assert.equal(normaliseSiteHost('10.0.0.1'), '10.0.0.1');
  assert.equal(normaliseSiteHost('*.test'), null);
  assert.equal(normaliseSiteHost('a.*.test'), null);
  assert.equal(normaliseSiteHost('-bad.test'), null);
  assert.equal(normaliseSiteHost('under_score.test'), null);
});

test('notices a second Host field in any case', () => {
  assert.equal(hasDuplicateHost(['Host', 'a.test', 'Accept', '*/*']), false);
  assert.equal(hasDuplicateHost(['Host', 'a.test', 'HOST', 'b.test']), true);
  assert.equal(hasDuplicateHost(['X-Host', 'a', 'host', 'b']), false);
});
