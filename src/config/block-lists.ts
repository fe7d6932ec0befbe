import type { IpRules } from '../access/index.js';
import { BlockList, isIP } from 'node:net';

/** Addresses and CIDRs (validated by the schema) as a BlockList. */
export function blockListOf(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [address, bits] = entry.split('/') as [string, string | undefined];
    const type = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(address, type);
    else list.addSubnet(address, Number(bits), type);
  }
  return list;
}

/** An `ipAccess` block (global or a site's); an empty deny list is none, so nothing runs per connection for it. */
export function ipRulesOf(raw: { allow?: string[]; deny?: string[] } | undefined): IpRules {
  return { allow: raw?.allow ? blockListOf(raw.allow) : null, deny: raw?.deny?.length ? blockListOf(raw.deny) : null };
}
