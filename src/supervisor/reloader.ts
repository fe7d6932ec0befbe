import { sameAddress, type Config } from '../config/index.js';
import { ConfigError, PortcullisError } from '../errors.js';
import type { Logger, SupervisorMetrics } from '../observe/index.js';
import { replacements } from '../tls/index.js';

/** What asked for a reload; the metric label is the short form. */
export type ReloadTrigger = 'SIGHUP' | 'control socket' | 'certificate files changed' | 'acme certificate issued';
const triggerLabel: Record<ReloadTrigger, string> = { SIGHUP: 'signal', 'control socket': 'control', 'certificate files changed': 'files', 'acme certificate issued': 'acme' };

export type ReloadResult =
  /** `unsaved`: in answers to deny-list and api-keys, the changes the instance holds in memory only (not saved under dataDir yet). */
  | { readonly ok: true; readonly message: string; readonly unsaved?: number }
  | { readonly ok: false; readonly code: string; readonly message: string };

/** A reload that ended: its result, what asked for it, and when (for the fleet registry). */
export interface ReloadOutcome {
  readonly result: ReloadResult;
  readonly trigger: ReloadTrigger;
  readonly at: Date;
}

/**
 * Runs reloads one at a time, whatever triggered them (signal, control
 * socket). A config that fails validation, or that cannot be applied, is
 * refused: the precise error is logged and returned, and `apply` is
 * responsible for leaving the previous config serving. Once `stop` was
 * called (the instance is shutting down), reloads are refused. Outcomes and
 * the certificates each applied reload swapped in are counted in `metrics`.
 */
export class Reloader {
  #queue: Promise<unknown> = Promise.resolve();
  #stopped = false;

  constructor(
    private readonly description: string,
    private readonly load: () => Promise<Config>,
    private readonly apply: (config: Config) => Promise<void>,
    private readonly log: Logger,
    private readonly metrics: SupervisorMetrics,
    /** The config served before a reload: what its certificates are compared with. */
    private readonly served: () => Config,
    /** Told of every reload once it ended, applied or refused. */
    private readonly ended: (outcome: ReloadOutcome) => void = () => {},
  ) {}

  reload(trigger: ReloadTrigger): Promise<ReloadResult> {
    const run = this.#queue.then(() => this.#reload(trigger));
    this.#queue = run;
    return run;
  }

  /** Refuses every later reload; waits for one in progress. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#queue;
  }

  async #reload(trigger: ReloadTrigger): Promise<ReloadResult> {
    const result = await this.#attempt(trigger);
    this.metrics.reloads.inc({ trigger: triggerLabel[trigger], result: result.ok ? 'applied' : 'refused', code: result.ok ? '' : result.code });
    this.metrics.lastReloadSuccessful.set(result.ok ? 1 : 0);
    this.ended({ result, trigger, at: new Date() });
    return result;
  }

  async #attempt(trigger: ReloadTrigger): Promise<ReloadResult> {
    if (this.#stopped) {
      this.log.warn({ event: 'reload_refused', trigger }, 'reload refused: the instance is stopping');
      return { ok: false, code: 'PCL_RELOAD_FAILED', message: 'the instance is stopping' };
    }
    this.log.info({ event: 'reload', trigger, config: this.description }, 'reloading the config');
    let config: Config;
    const before = this.served();
    try {
      config = await this.load();
      await this.apply(config);
    } catch (err) {
      const code = err instanceof PortcullisError ? err.code : 'PCL_RELOAD_FAILED';
      const message = err instanceof Error ? err.message : String(err);
      this.log.error(
        { event: 'reload_refused', trigger, code, error: message, ...(err instanceof ConfigError ? { issues: err.issues } : {}) },
        'reload refused; the previous config keeps serving',
      );
      return { ok: false, code, message };
    }
    for (const { site } of replacements(before, config)) this.metrics.certificateRotations.inc({ site: site.id });
    if (!sameAddress(before.listen.admin, config.listen.admin)) this.log.warn({ event: 'admin_unchanged' }, 'a new listen.admin applies at the next start; the admin listener stays where it is');
    const routes = config.sites.reduce((n, s) => n + s.routes.length, 0);
    const message = `reloaded ${this.description}: ${config.sites.length} site(s), ${routes} route(s)`;
    this.log.info({ event: 'reloaded', trigger, sites: config.sites.length, routes }, message);
    return { ok: true, message };
  }
}
