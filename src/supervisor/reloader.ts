import type { Config } from '../config/index.js';
import { ConfigError, PortcullisError } from '../errors.js';
import type { Logger } from '../telemetry/index.js';

export type ReloadResult = { readonly ok: true; readonly message: string } | { readonly ok: false; readonly code: string; readonly message: string };

/**
 * Runs reloads one at a time, whatever triggered them (signal, control
 * socket). A config that fails validation, or that cannot be applied, is
 * refused: the precise error is logged and returned, and `apply` is
 * responsible for leaving the previous config serving. Once `stop` was
 * called (the instance is shutting down), reloads are refused.
 */
export class Reloader {
  #queue: Promise<unknown> = Promise.resolve();
  #stopped = false;

  constructor(
    private readonly description: string,
    private readonly load: () => Promise<Config>,
    private readonly apply: (config: Config) => Promise<void>,
    private readonly log: Logger,
  ) {}

  reload(trigger: string): Promise<ReloadResult> {
    const run = this.#queue.then(() => this.#reload(trigger));
    this.#queue = run;
    return run;
  }

  /** Refuses every later reload; waits for one in progress. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#queue;
  }

  async #reload(trigger: string): Promise<ReloadResult> {
    if (this.#stopped) {
      this.log.warn({ event: 'reload_refused', trigger }, 'reload refused: the instance is stopping');
      return { ok: false, code: 'PCL_RELOAD_FAILED', message: 'the instance is stopping' };
    }
    this.log.info({ event: 'reload', trigger, config: this.description }, 'reloading the config');
    let config: Config;
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
    const routes = config.sites.reduce((n, s) => n + s.routes.length, 0);
    const message = `reloaded ${this.description}: ${config.sites.length} site(s), ${routes} route(s)`;
    this.log.info({ event: 'reloaded', trigger, sites: config.sites.length, routes }, message);
    return { ok: true, message };
  }
}
