import { createSecureContext, type SecureContext } from 'node:tls';
import { Pool, buildConnector } from 'undici';
import type { Config, HttpUpstream, Route, UpstreamTarget, UpstreamTls } from '../config/index.js';
import { tlsProfiles } from '../config/index.js';
import { profileOptions } from '../tls/index.js';

/** How long an upstream that refused a connection is skipped by round robin. */
export const failedUpstreamPauseMs = 10_000;

export interface Target {
  readonly upstream: UpstreamTarget;
  /** Null for builtin upstreams, which answer in-process. */
  readonly pool: Pool | null;
  /**
   * Passed with every request so undici keys its connections on a constant
   * name instead of the client's Host header (the TLS name itself is pinned
   * by the pool's connector).
   */
  readonly servername: string;
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
          if (upstream.kind === 'builtin') return { upstream, pool: null, servername: '', downUntil: 0 };
          let context: SecureContext | undefined;
          if (upstream.tls) {
            context = contexts.get(upstream.tls) ?? upstreamContext(upstream.tls);
            contexts.set(upstream.tls, context);
          }
          const pool = this.#pool(upstream, context, config);
          return { upstream, pool, servername: upstream.serverName ?? upstream.host, downUntil: 0 };
        });
        this.#groups.set(route, new UpstreamGroup(targets));
      }
    }
  }

  groupFor(route: Route): UpstreamGroup {
    return this.#groups.get(route) as UpstreamGroup;
  }

  /** Closes every pool once the requests it has in flight finish (after a reload). */
  async close(): Promise<void> {
    await Promise.all([...this.#pools.values()].flatMap((byOrigin) => [...byOrigin.values()].map((p) => p.close())));
  }

  /** Closes every pool and its connections now; requests still in flight fail. */
  async destroy(): Promise<void> {
    await Promise.all([...this.#pools.values()].flatMap((byOrigin) => [...byOrigin.values()].map((p) => p.destroy())));
  }

  #pool(upstream: HttpUpstream, secureContext: SecureContext | undefined, config: Config): Pool {
    const { origin, tls } = upstream;
    let byOrigin = this.#pools.get(tls);
    if (!byOrigin) this.#pools.set(tls, (byOrigin = new Map()));
    let pool = byOrigin.get(origin);
    if (!pool) {
      const t = config.timeouts;
      pool = new Pool(origin, {
        connect: pinnedConnector(upstream, secureContext, t.upstreamConnectMs),
        headersTimeout: t.upstreamResponseMs,
        bodyTimeout: t.upstreamIdleMs,
        keepAliveTimeout: 30_000,
        connections: config.limits.maxUpstreamConnections,
      });
      byOrigin.set(origin, pool);
    }
    return pool;
  }
}

/**
 * undici takes the TLS server name from each request's Host header; an
 * upstream's identity is ours to decide, so the connector pins it to the
 * upstream's configured name.
 */
function pinnedConnector(upstream: HttpUpstream, secureContext: SecureContext | undefined, timeout: number): buildConnector.connector {
  const connect = buildConnector({ timeout, ...(secureContext ? { secureContext, rejectUnauthorized: true } : {}) });
  if (!upstream.tls) return connect;
  const servername = upstream.serverName;
  return (opts, callback) => connect({ ...opts, servername }, callback);
}

function upstreamContext(tls: UpstreamTls): SecureContext {
  return createSecureContext({
    ...profileOptions(tlsProfiles.intermediate),
    ca: [...tls.ca],
    ...(tls.clientCertificate ? { cert: tls.clientCertificate.chainPem, key: tls.clientCertificate.keyPem } : {}),
  });
}
