import assert from 'node:assert/strict';
import { BlockList } from 'node:net';
import { test } from 'node:test';
import { ipAdmitted } from '../../src/access/index.js';

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
