import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseRequestTarget } from '../../src/proxy/request-target.js';

describe('request-target normalisation', () => {
  const ok: [string, string, string, string | null][] = [
    ['/a/b?x=1', '/a/b', '?x=1', null],
    ['/%61dmin/x', '/admin/x', '', null],
    ['/a%7eb%2d', '/a~b-', '', null],
    ['/a%3bb%c3%a9', '/a%3Bb%C3%A9', '', null],
    ['//admin', '/admin', '', null],
    ['/a///b//', '/a/b/', '', null],
    ['/a;v=1/b', '/a;v=1/b', '', null],
    ['/a/./b', '/a/b', '', null],
    ['/a/../b', '/b', '', null],
    ['/a/b/..', '/a/', '', null],
    ['/../../etc/passwd', '/etc/passwd', '', null],
    ['/a/%2e%2e/b', '/b', '', null],
    ['/a/%2E/b', '/a/b', '', null],
    ['/a/..%2e/b', '/a/.../b', '', null],
    ['/a/b?next=/../x', '/a/b', '?next=/../x', null],
    ['https://api.test:8443/p?q', '/p', '?q', 'api.test:8443'],
    ['http://api.test', '/', '', 'api.test'],
  ];
  for (const [input, path, query, authority] of ok) {
    test(`normalises ${input} to ${path}${query}`, () => {
      const r = parseRequestTarget(input);
      assert.deepEqual(r, { ok: true, path, query, authority });
    });
  }

  const refused: [string, string][] = [
    ['/a%2fb', 'ambiguous_path'],
    ['/a%2F..%2Fadmin', 'ambiguous_path'],
    ['/a%5cb', 'ambiguous_path'],
    ['/a\\..\\admin', 'ambiguous_path'],
    ['*', 'bad_request_target'],
    ['ftp://x/y', 'bad_request_target'],
    ['api.test:443', 'bad_request_target'],
    ['/a#frag', 'bad_request_target'],
    ['/a%zz', 'bad_request_target'],
    ['/a%2', 'bad_request_target'],
    ['/public/..;/admin', 'ambiguous_path'],
    ['/public/.;/admin', 'ambiguous_path'],
    ['/..;x/admin', 'ambiguous_path'],
  ];
  for (const [input, reason] of refused) {
    test(`refuses ${input} with ${reason}`, () => {
      assert.deepEqual(parseRequestTarget(input), { ok: false, reason });
    });
  }
});
