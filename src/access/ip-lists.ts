import { isIPv6, type BlockList } from 'node:net';

/** IP allow/deny lists, compiled at config load: `deny` always wins; a non-null `allow` admits only what it lists. */
export interface IpRules {
  readonly allow: BlockList | null;
  readonly deny: BlockList | null;
}

export function ipAdmitted(rules: IpRules, address: string): boolean {
  if (rules.allow === null && rules.deny === null) return true;
  // IPv4-mapped IPv6 addresses (a listener on "::") match IPv4 rules too: BlockList maps them
  const family = isIPv6(address) ? 'ipv6' : 'ipv4';
  if (rules.deny?.check(address, family)) return false;
  return rules.allow === null || rules.allow.check(address, family);
}
