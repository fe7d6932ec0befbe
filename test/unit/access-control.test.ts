import assert from 'node:assert/strict';
import { BlockList } from 'node:net';
import { test } from 'node:test';
import { ipAdmitted } from '../../src/access/index.js';
import { memoryRateBuckets } from '../../src/state/index.js';

const list = (...cidrs: [string, number, 'ipv4' | 'ipv6'][]) => {
  const b = new BlockList();
  for (const [a, bits, family] of cidrs) b.addSubnet(a, bits, family);
  return b;
};

test('ipAccess: deny wins over allow, allow admits only its CIDRs, IPv6 and IPv4-mapped addresses included', () => {
  const rules = { allow: list(['10.0.0.0', 8, 'ipv4'], ['2001:db8::', 32, 'ipv6']), deny: list(['10.6.6.0', 24, 'ipv4'], ['2001:db8:bad::', 48, 'ipv6']) };
  assert.equal(ipAdmitted(rules, '10.1.2.3'), true);
  assert.equal(ipAdmitted(rules, '10.6.6.6'), false, 'denied inside the allowed range');
  assert.equal(ipAdmitted(rules, '192.0.2.1'), false, 'outside the allow list');
  assert.equal(ipAdmitted(rules, '2001:db8::1'), true);
  assert.equal(ipAdmitted(rules, '2001:db8:bad::1'), false);
  assert.equal(ipAdmitted(rules, '::ffff:10.1.2.3'), true, 'an IPv4-mapped address on a dual-stack listener matches the IPv4 rule');
  assert.equal(ipAdmitted(rules, '::ffff:10.6.6.6'), false);
  assert.equal(ipAdmitted({ allow: null, deny: list(['192.0.2.0', 24, 'ipv4']) }, '198.51.100.1'), true, 'deny only: everyone else is admitted');
  assert.equal(ipAdmitted({ allow: null, deny: null }, '192.0.2.1'), true);
});

test('rate buckets: burst at once, then one per 1/rps seconds; Retry-After until the next token; least recently used forgotten past the bound', () => {
  const buckets = memoryRateBuckets(2);
  const take = (key: string, at: number) => buckets.take(key, 2, 3, at);
  assert.deepEqual([take('a', 0), take('a', 0), take('a', 0)].map((d) => [d.allowed, d.remaining]), [[true, 2], [true, 1], [true, 0]]);
  const refused = take('a', 100);
  assert.equal(refused.allowed, false);
  assert.ok(Math.abs(refused.retryAfter - 0.4) < 1e-9, 'at 2 rps the next token is 0.5 s after the burst, 0.4 s from now');
  assert.ok(Math.abs(refused.reset - 1.4) < 1e-9, 'full again after 1.4 s');
  assert.equal(take('a', 600).allowed, true);
  take('b', 600);
  take('c', 600);
  assert.equal(take('a', 600).remaining, 2, 'a was the least recently used and was forgotten: a fresh bucket');
});
