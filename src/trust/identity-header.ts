import type { ClientIdentity } from './identity.js';

/**
 * Quotes a value for the identity header: inside double quotes, `\` and `"`
 * are backslash-escaped and anything outside printable ASCII (and `%`) is
 * percent-encoded as UTF-8, so the header stays valid whatever the
 * certificate holds and the value can be decoded exactly.
 */
export function quoteValue(value: string): string {
  let out = '"';
  for (const ch of value) {
    const code = ch.codePointAt(0) as number;
    if (ch === '\\' || ch === '"') out += `\\${ch}`;
    else if (code < 0x20 || code > 0x7e || ch === '%') out += percentEncode(ch);
    else out += ch;
  }
  return `${out}"`;
}

function percentEncode(ch: string): string {
  try {
    return encodeURIComponent(ch);
  } catch {
    return '%EF%BF%BD'; // a lone surrogate: U+FFFD
  }
}

/**
 * The client identity as the upstream sees it, in the spirit of Envoy's
 * X-Forwarded-Client-Cert: `Hash=<sha256 hex>;Subject="…";Issuer="…";URI="…";DNS="…";Email="…"`,
 * one `URI`/`DNS`/`Email` pair per SAN, every value but Hash quoted.
 */
export function identityHeaderValue(identity: ClientIdentity): string {
  let value = `Hash=${identity.fingerprint.slice(7).replace(/:/g, '').toLowerCase()};Subject=${quoteValue(identity.subject)};Issuer=${quoteValue(identity.issuer)}`;
  for (const uri of identity.uris) value += `;URI=${quoteValue(uri)}`;
  for (const name of identity.dnsNames) value += `;DNS=${quoteValue(name)}`;
  for (const email of identity.emails) value += `;Email=${quoteValue(email)}`;
  return value;
}
