/**
 * Request-target normalisation (RFC 9112 §3.2, RFC 3986 §5.2.4).
 *
 * Routes are matched, and the target is forwarded, after dot segments are
 * removed, so `/public/../admin` cannot reach a route it does not match.
 * Encoded slashes and backslashes are refused (`ambiguous_path`): upstreams
 * disagree on whether `%2F` separates segments, which is how path-based
 * access rules get bypassed (e.g. CVE-2019-9901).
 */

export type TargetResult = { ok: true; path: string; query: string; authority: string | null } | { ok: false; reason: 'bad_request_target' | 'ambiguous_path' };

const badTarget = { ok: false, reason: 'bad_request_target' } as const;
const ambiguous = { ok: false, reason: 'ambiguous_path' } as const;

export function parseRequestTarget(raw: string): TargetResult {
  let target = raw;
  let authority: string | null = null;
  if (target[0] !== '/') {
    // absolute-form: its authority replaces the Host header (RFC 9112 §3.2.2)
    const m = /^https?:\/\/([^/?#]*)(.*)$/i.exec(target);
    if (!m) return badTarget;
    authority = m[1] as string;
    target = m[2] || '/';
    if (target[0] !== '/') target = `/${target}`;
  }
  const q = target.indexOf('?');
  let path = q < 0 ? target : target.slice(0, q);
  const query = q < 0 ? '' : target.slice(q);
  if (path.includes('#')) return badTarget;
  if (path.includes('\\')) return ambiguous;
  if (path.includes('%')) {
    if (/%(2f|5c)/i.test(path)) return ambiguous;
    // %2E is an unreserved "." (RFC 3986 §2.3): decode it so dot segments are seen
    path = path.replace(/%2e/gi, '.');
  }
  if (path.includes('/.')) path = removeDotSegments(path);
  return { ok: true, path, query, authority };
}

/** RFC 3986 §5.2.4, for an absolute path. */
export function removeDotSegments(path: string): string {
  const out: string[] = [];
  const segments = path.split('/');
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i] as string;
    const last = i === segments.length - 1;
    if (s === '.') {
      if (last) out.push('');
    } else if (s === '..') {
      out.pop();
      if (last) out.push('');
    } else {
      out.push(s);
    }
  }
  return `/${out.join('/')}`;
}
