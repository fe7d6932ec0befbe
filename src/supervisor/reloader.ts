import type { Config } from '../config/index.js';
import { ConfigError, PortcullisError } from '../errors.js';
import type { Logger } from '../telemetry/index.js';
import type { ConfigSource } from './config-source.js';

export type ReloadResult = { readonly ok: true; readonly message: string } | { readonly ok: false; readonly code: string; readonly message: string };

/**
 * Runs reloads one at a time, whatever triggered them (signal, control
 * socket). A config that fails validation, or that cannot be applied, is
 * refused as a whole: the previous one keeps serving and the precise error
 * is logged and returned.
 */
export class Reloader {
  #queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly source: ConfigSource,
    private readonly apply: (config: Config) => Promise<void>,
    private readonly log: Logger,
  ) {}

  reload(trigger: string): Promise<ReloadResult> {
    const run = this.#queue.then(() => this.#reload(trigger));
    this.#queue = run;
    return run;
  }

  async #reload(trigger: string): Promise<ReloadResult> {
    this.log.info({ event: 'reload', trigger, config: this.source.description }, 'reloading the config');
    let config: Config;
    try {
      config = await this.source.load();
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
    const message = `reloaded ${this.source.description}: ${config.sites.length} site(s), ${routes} route(s)`;
    this.log.info({ event: 'reloaded', trigger, sites: config.sites.length, routes }, message);
    return { ok: true, message };
  }
}
