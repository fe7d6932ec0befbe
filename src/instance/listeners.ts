import type { AddressInfo } from 'node:net';
import { formatHostPort, sameAddress, type Config, type ListenAddress } from '../config/index.js';
import { HttpsListener, RedirectListener, type HttpsListenerOptions } from '../edge/index.js';
import type { Logger } from '../observe/index.js';

/** How often a drain sweeps connections that became idle since the last sweep. */
const drainSweepMs = 250;

interface Redirect {
  readonly listener: RedirectListener;
  readonly address: AddressInfo;
}

/**
 * An instance's listening sockets: the HTTPS listener (and the listeners of
 * earlier configs that still have connections open) and the redirect
 * listener. A reload that changes an address binds the new one before the
 * old one stops accepting.
 */
export class Listeners {
  #https!: HttpsListener;
  #address!: AddressInfo;
  #redirect: Redirect | null = null;
  /** HTTPS listeners of earlier configs that still have connections open. */
  readonly #retired = new Set<HttpsListener>();

  private constructor(
    private readonly options: HttpsListenerOptions,
    private readonly redirectOptions: { config: () => Config; acmeAnswer: (token: string) => string | null },
    private readonly log: Logger,
  ) {}

  /** Binds the listeners `config` asks for; rejects with PCL_LISTEN_FAILED, nothing left open. */
  static async open(config: Config, options: HttpsListenerOptions, redirectOptions: Listeners['redirectOptions'], log: Logger): Promise<Listeners> {
    const listeners = new Listeners(options, redirectOptions, log);
    listeners.#https = new HttpsListener(config, options);
    listeners.#address = await listeners.#https.listen(config.listen.https, 'listen.https');
    if (config.listen.http) {
      try {
        listeners.#redirect = await listeners.#openRedirect(config.listen.http);
      } catch (err) {
        await listeners.#https.stopAccepting();
        throw err;
      }
    }
    return listeners;
  }

  get address(): AddressInfo {
    return this.#address;
  }

  get httpAddress(): AddressInfo | null {
    return this.#redirect?.address ?? null;
  }

  /** Open connections on every HTTPS listener, current and retired. */
  get connections(): number {
    return this.#all().reduce((n, l) => n + l.connections, 0);
  }

  /** The global settings of `config` (ipAccess, handshake timeout), for new connections. */
  apply(config: Config): void {
    this.#https.apply(config);
  }

  /**
   * Moves what `next` moves (compared with what is bound, so that port 0 in
   * the served config matches the port it got): the new address is bound
   * before the old one stops accepting. Rejects with nothing changed.
   */
  async move(served: Config, next: Config): Promise<void> {
    const bound = (configured: ListenAddress | null, at: AddressInfo | undefined) => (configured && at ? { host: configured.host, port: at.port } : configured);
    const movesHttps = !sameAddress(next.listen.https, bound(served.listen.https, this.#address)) && !sameAddress(next.listen.https, served.listen.https);
    const movesHttp = !sameAddress(next.listen.http, bound(served.listen.http, this.#redirect?.address)) && !sameAddress(next.listen.http, served.listen.http);
    const fresh = movesHttps ? new HttpsListener(next, this.options) : null;
    const freshAddress = fresh ? await fresh.listen(next.listen.https, 'listen.https') : null;
    let freshRedirect: Redirect | null = null;
    if (movesHttp && next.listen.http) {
      try {
        freshRedirect = await this.#openRedirect(next.listen.http);
      } catch (err) {
        fresh?.destroyAll();
        void fresh?.stopAccepting();
        throw err;
      }
    }
    if (fresh && freshAddress) this.#moveHttps(fresh, freshAddress);
    if (movesHttp) this.#moveRedirect(freshRedirect);
  }

  /**
   * Stops accepting, asks open connections to finish (`sweep` is called now
   * and every 250 ms) and resolves with how many are still open once all
   * closed or `deadlineMs` passed.
   */
  async drain(deadlineMs: number, sweep: () => void): Promise<number> {
    void this.#redirect?.listener.close();
    const all = this.#all();
    const allClosed = Promise.all(all.map((l) => l.stopAccepting()));
    sweep();
    const sweeper = setInterval(sweep, drainSweepMs);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => (timer = setTimeout(() => resolve('deadline'), deadlineMs)));
    const outcome = await Promise.race([allClosed.then(() => 'drained' as const), deadline]);
    clearInterval(sweeper);
    clearTimeout(timer);
    return outcome === 'deadline' ? this.connections : 0;
  }

  /** Closes every listener and connection at once. */
  async close(): Promise<void> {
    const all = this.#all();
    for (const l of all) l.destroyAll();
    await Promise.all([...all.map((l) => l.stopAccepting()), this.#redirect?.listener.close()]);
  }

  #all(): HttpsListener[] {
    return [this.#https, ...this.#retired];
  }

  #moveHttps(fresh: HttpsListener, address: AddressInfo): void {
    const old = this.#https;
    this.#retired.add(old);
    void old.stopAccepting().then(() => this.#retired.delete(old));
    this.#https = fresh;
    this.#address = address;
    this.log.info({ event: 'listening', https: formatHostPort(address.address, address.port) }, 'HTTPS listener moved');
  }

  #moveRedirect(fresh: Redirect | null): void {
    void this.#redirect?.listener.close();
    this.#redirect = fresh;
    const http = fresh ? formatHostPort(fresh.address.address, fresh.address.port) : null;
    this.log.info({ event: 'listening', http }, http ? `redirecting HTTP on ${http}` : 'HTTP redirect listener closed');
  }

  async #openRedirect(at: ListenAddress): Promise<Redirect> {
    const r = new RedirectListener({ config: this.redirectOptions.config, httpsPort: () => this.#address.port, log: this.log });
    r.setChallengeResponder(this.redirectOptions.acmeAnswer);
    return { listener: r, address: await r.listen(at) };
  }
}
