import { normalisePath } from '../config/index.js';

/**
 * Request-target parsing (RFC 9112 §3.2): origin-form, or absolute-form whose
 * authority then replaces the Host header (§3.2.2). The path comes back in
 * normal form (see `normalisePath`); the query is kept as sent.
 */

export type TargetResult =
  | { ok: true; path: string; query: string; authority: string | null }
  | { ok: false; reason: 'bad_request_target' | 'ambiguous_path' };

const badTarget = { ok: false, reason: 'bad_request_target' } as const;

export function parseRequestTarget(raw: string): TargetResult {
  let target = raw;
  let authority: string | null = null;
  if (target[0] !== '/') {
    const m = /^https?:\/\/([^/?#]*)(.*)$/i.exec(target);
    if (!m) return badTarget;
    authority = m[1] as string;
    target = m[2] || '/';
    if (target[0] !== '/') target = `/${target}`;
  }
  const q = target.indexOf('?');
  const normal = normalisePath(q < 0 ? target : target.slice(0, q));
  if (!normal.ok) return normal;
  return { ok: true, path: normal.path, query: q < 0 ? '' : target.slice(q), authority };
}
