/**
 * The ACME challenges being answered right now, in a form that crosses the
 * IPC channel to cluster workers: http-01 tokens for the redirect listener,
 * tls-alpn-01 certificates (RFC 8737) for the HTTPS listener.
 */
export interface AcmeChallengeSet {
  readonly http: readonly { readonly token: string; readonly keyAuthorization: string }[];
  readonly alpn: readonly { readonly name: string; readonly certPem: string; readonly keyPem: string }[];
}

export const noChallenges: AcmeChallengeSet = { http: [], alpn: [] };

/**
 * Holds the challenges of every order in flight and publishes the whole set
 * on each change; `publish` resolves once every listener answers with it, so
 * the ACME server is told to validate only when the answer is in place.
 */
export class ChallengeBoard {
  #http = new Map<string, string>();
  #alpn = new Map<string, { certPem: string; keyPem: string }>();

  constructor(private readonly publish: (set: AcmeChallengeSet) => Promise<void>) {}

  current(): AcmeChallengeSet {
    return {
      http: [...this.#http].map(([token, keyAuthorization]) => ({ token, keyAuthorization })),
      alpn: [...this.#alpn].map(([name, c]) => ({ name, ...c })),
    };
  }

  addHttp(token: string, keyAuthorization: string): Promise<void> {
    this.#http.set(token, keyAuthorization);
    return this.publish(this.current());
  }

  addAlpn(name: string, certPem: string, keyPem: string): Promise<void> {
    this.#alpn.set(name, { certPem, keyPem });
    return this.publish(this.current());
  }

  remove(kind: 'http' | 'alpn', id: string): Promise<void> {
    if (kind === 'http') this.#http.delete(id);
    else this.#alpn.delete(id);
    return this.publish(this.current());
  }
}
