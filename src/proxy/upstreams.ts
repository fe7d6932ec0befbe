import { createSecureContext, type SecureContext } from 'node:tls';
import { Pool } from 'undici';
import type { Config, Route, UpstreamTarget, UpstreamTls } from '../config/index.js';
import { tlsProfiles } from '../config/index.js';
import { profileOptions } from '../tls/index.js';

/** How long an upstream that refused a connection is skipped by round robin. */
export const failedUpstreamPauseMs = 10_000;

export interface Target {
  readonly upstream: UpstreamTarget;
  /** Null for builtin upstreams, which answer in-process. */
  readonly pool: Pool | null;
  downUntil: number;
}

/** The upstreams of one route: round robin, skipping targets that failed recently. */
export class UpstreamGroup {
  #next = 0;
  constructor(readonly targets: readonly Target[]) {}

  /** The next healthy target other than `exclude`; when all are paused, the one paused longest ago, so traffic never stops for good. */
  pick(now: number, exclude: Target | null = null): Target | null {
    const n = this.targets.length;
    for (let i = 0; i < n; i++) {
      const t = this.targets[(this.#next + i) % n] as Target;
      if (t !== exclude && t.downUntil <= now) {
        this.#next = (this.#next + i + 1) % n;
        return t;
      }
    }
    let best: Target | null = null;
    for (const t of this.targets) if (t !== exclude && (!best || t.downUntil < best.downUntil)) best = t;
    return best;
  }

  markFailed(target: Target, now: number): void {
    target.downUntil = now + failedUpstreamPauseMs;
  }
}

/**
 * Every route's upstream group for one config generation, with one undici
 * pool (keep-alive, connection reuse) per upstream origin and TLS setting.
 * Upstream TLS always verifies: public roots plus upstreamTls.ca, the
 * configured server name, TLS 1.2+ with AEAD ciphers only.
 */
export class UpstreamSet {
  readonly #groups = new Map<Route, UpstreamGroup>();
  readonly #pools = new Map<UpstreamTls | null, Map<string, Pool>>();

  constructor(config: Config) {
    const contexts = new Map<UpstreamTls, SecureContext>();
    for (const site of config.sites) {
      for (const route of site.routes) {
        const targets = route.upstreams.map((upstream): Target => {
          if (upstream.kind === 'builtin') return { upstream, pool: null, downUntil: 0 };
          let context: SecureContext | undefined;
          if (upstream.tls) {
            context = contexts.get(upstream.tls) ?? upstreamContext(upstream.tls);
            contexts.set(upstream.tls, context);
          }
          return { upstream, pool: this.#pool(upstream.origin, upstream.tls, context, config), downUntil: 0 };
        });
        this.#groups.set(route, new UpstreamGroup(targets));
      }
    }
  }

  groupFor(route: Route): UpstreamGroup {
    return this.#groups.get(route) as UpstreamGroup;
  }

  /** Closes every pool after its in-flight requests finish. */
  async close(): Promise<void> {
    await Promise.all([...this.#pools.values()].flatMap((byOrigin) => [...byOrigin.values()].map((p) => p.close())));
  }

  #pool(origin: string, tls: UpstreamTls | null, secureContext: SecureContext | undefined, config: Config): Pool {
    let byOrigin = this.#pools.get(tls);
    if (!byOrigin) this.#pools.set(tls, (byOrigin = new Map()));
    let pool = byOrigin.get(origin);
    if (!pool) {
      const t = config.timeouts;
      pool = new Pool(origin, {
        connect: {
          timeout: t.upstreamConnectMs,
          ...(secureContext ? { secureContext, servername: tls?.serverName, rejectUnauthorized: true } : {}),
        },
        headersTimeout: t.upstreamResponseMs,
        bodyTimeout: t.upstreamIdleMs,
        keepAliveTimeout: 30_000,
      });
      byOrigin.set(origin, pool);
    }
    return pool;
  }
}

function upstreamContext(tls: UpstreamTls): SecureContext {
  return createSecureContext({
    ...profileOptions(tlsProfiles.intermediate),
    ca: [...tls.ca],
    ...(tls.clientCertificate ? { cert: tls.clientCertificate.chainPem, key: tls.clientCertificate.keyPem } : {}),
  });
}
