/** How client certificate chains are checked for revocation: the trust part of a site's `clientAuth`, built by config provisioning. */
export interface RevocationPolicy {
  /** Configured CRLs: absolute file paths and http(s) URLs. */
  readonly crls: readonly { readonly kind: 'file' | 'url'; readonly location: string }[];
  /** `crl:` is given (even empty): distribution points named in client certificates are fetched too. */
  readonly distributionPoints: boolean;
  readonly ocsp: boolean;
  /** Asked instead of the responder named in the certificates, when set. */
  readonly ocspResponder: string | null;
  /** What happens to a certificate for which no fresh answer can be had. */
  readonly onUnavailable: 'reject' | 'allow';
}
