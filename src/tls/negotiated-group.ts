import { groupId, groupName, postQuantumGroups, runtimeGroups, type TlsProfile } from '../config/index.js';
import type { HelloSummary } from '../edge/index.js';

/** A profile's groups as code points, worked out once per profile. */
const tuplesOf = new WeakMap<TlsProfile, readonly (readonly number[])[]>();

function tuples(profile: TlsProfile): readonly (readonly number[])[] {
  let found = tuplesOf.get(profile);
  if (!found) {
    found = profile.groups.map((tuple) => tuple.map(groupId));
    tuplesOf.set(profile, found);
  }
  return found;
}

/**
 * The key-exchange group of a finished handshake. Node names it to a TLS
 * client (`getEphemeralKeyInfo()`) but not to a server, so it is worked out
 * here from what the client offered and our groups, by the rule the runtime's
 * OpenSSL applies (SSL_CTX_set1_groups_list(3)); the end-to-end tests check
 * the answer against clients that report the group themselves. Null when the
 * edge did not see the ClientHello. `withTuples`: whether the OpenSSL doing
 * the handshake reads group tuples (3.5 and later).
 *
 * TLS 1.3, OpenSSL ≥ 3.5: the first of our tuples holding a group the client
 * lists; in it, our most preferred group the client sent a share for, else
 * (after a HelloRetryRequest) our most preferred one it lists.
 * TLS 1.3, OpenSSL 3.0: the client's first key share we support, else our
 * most preferred group it lists. TLS 1.2: our most preferred classical group
 * it lists (all of them when it lists none).
 */
export function negotiatedGroup(hello: HelloSummary | null, tlsVersion: string, profile: TlsProfile, withTuples = runtimeGroups.tuples): string | null {
  if (!hello) return null;
  const listed = (g: number): boolean => hello.groups.includes(g);
  const ours = tuples(profile);
  let chosen: number | undefined;
  if (tlsVersion === 'TLSv1.3') {
    const shared = (g: number): boolean => listed(g) && hello.keyShares.includes(g);
    if (withTuples) {
      const tuple = ours.find((t) => t.some(listed));
      chosen = tuple?.find(shared) ?? tuple?.find(listed);
    } else {
      const flat = ours.flat();
      chosen = hello.keyShares.find((g) => listed(g) && flat.includes(g)) ?? flat.find(listed);
    }
  } else {
    const classical = ours.flat().filter((g) => !postQuantumGroups.has(g));
    chosen = hello.groups.length === 0 ? classical[0] : classical.find(listed);
  }
  return chosen === undefined ? null : groupName(chosen);
}
