/**
 * URL path normalisation (RFC 3986 §6.2.2 and §5.2.4), shared by route
 * paths at load and request paths at run time, so both compare in one form.
 *
 * Routes are matched, and the path is forwarded, in normal form: escaped
 * unreserved characters decoded (`/%61dmin` is `/admin`), runs of slashes
 * merged, dot segments removed. Forms that upstreams interpret differently
 * are refused as `ambiguous_path`: encoded slash or backslash (`%2F`, `%5C`,
 * e.g. CVE-2019-9901), a raw backslash, and Tomcat-style path parameters on
 * dot segments (`/..;/`). Without this, `/public/..;/admin` or `/%61dmin`
 * would match one route here and be served as another path upstream.
 */

export type PathResult = { readonly ok: true; readonly path: string } | { readonly ok: false; readonly reason: 'ambiguous_path' | 'bad_request_target' };

const needsWork = /[%\\;#]|\/\.|\/\//;
const unreserved = /[A-Za-z0-9\-._~]/;
const dotWithParameter = /(^|\/)\.\.?;/;

/** Normalises an absolute path (no query). */
export function normalisePath(raw: string): PathResult {
  if (!needsWork.test(raw)) return { ok: true, path: raw };
  if (raw.includes('#')) return { ok: false, reason: 'bad_request_target' };
  if (raw.includes('\\')) return { ok: false, reason: 'ambiguous_path' };
  let path = raw;
  if (path.includes('%')) {
    if (/%(?![0-9A-Fa-f]{2})/.test(path)) return { ok: false, reason: 'bad_request_target' };
    if (/%(2f|5c)/i.test(path)) return { ok: false, reason: 'ambiguous_path' };
    path = path.replace(/%[0-9A-Fa-f]{2}/g, (escape) => {
      const char = String.fromCharCode(parseInt(escape.slice(1), 16));
      return unreserved.test(char) ? char : escape.toUpperCase();
    });
  }
  if (dotWithParameter.test(path)) return { ok: false, reason: 'ambiguous_path' };
  if (path.includes('//')) path = path.replace(/\/{2,}/g, '/');
  if (path.includes('/.')) path = removeDotSegments(path);
  return { ok: true, path };
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
