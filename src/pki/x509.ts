// @peculiar/x509 needs reflect-metadata loaded first and a WebCrypto provider.
import 'reflect-metadata';
import { X509Certificate, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

// Node's webcrypto implements the standard Crypto interface that the library types as lib.dom's Crypto
type DomCrypto = Parameters<x509.CryptoProvider['set']>[1];
x509.cryptoProvider.set(webcrypto as unknown as DomCrypto);

export { x509 };

/** One PEM block: its label ("CERTIFICATE", "PRIVATE KEY" …) and its text, from BEGIN to END line and a newline. */
export interface PemBlock {
  readonly label: string;
  readonly pem: string;
}

const nouns: Record<string, string> = {
  CERTIFICATE: 'certificate',
  'X509 CRL': 'CRL',
  CRL: 'CRL',
  'PRIVATE KEY': 'private key',
  'EC PRIVATE KEY': 'private key',
  'RSA PRIVATE KEY': 'private key',
  'ENCRYPTED PRIVATE KEY': 'private key',
};

/**
 * A PEM file with a block that is opened and never closed: the file was cut
 * off (a full disk, a copy interrupted, a read while it was being written),
 * or cut off and then something appended. Reading on would silently drop
 * that block — an intermediate missing from a chain, a CA missing from a
 * bundle — so it is an error that names the file.
 */
export class PemError extends Error {
  readonly source: string;
  /** The label of the unclosed block. */
  readonly label: string;
  /** The complete blocks before it. */
  readonly blocks: readonly PemBlock[];
  /** `"-----BEGIN CERTIFICATE-----" without its "-----END CERTIFICATE-----" line`: for callers that word the problem their own way. */
  readonly detail: string;
  constructor(source: string, label: string, blocks: readonly PemBlock[], nextBegins: boolean) {
    const ordinal = blocks.filter((b) => b.label === label).length + 1;
    const noun = nouns[label] ?? `"${label}" block`;
    const detail = `"-----BEGIN ${label}-----" without its "-----END ${label}-----" line`;
    const what = nextBegins
      ? `breaks off inside ${noun} #${ordinal} (${detail}) where another block begins: the file was truncated, then appended to`
      : ordinal === 1
        ? `holds no PEM ${noun}, only the start of one (${detail}): the file is truncated`
        : `ends inside ${noun} #${ordinal} (${detail}): the file is truncated`;
    super(`${source} ${what}; write the whole file again`);
    this.name = 'PemError';
    this.source = source;
    this.label = label;
    this.blocks = blocks;
    this.detail = detail;
  }
}

const beginLine = /^-----BEGIN ([A-Z0-9 ]+)-----$/;

/**
 * The PEM blocks of a file, each with its label, in order. Text outside
 * blocks (OpenSSL's "subject=…" headers, comments) is skipped. `source` names
 * the file in errors. Throws a PemError when a block is opened and not closed
 * before the end of the text or the next BEGIN line.
 */
export function pemBlocks(text: string, source: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  let open: { label: string; lines: string[] } | null = null;
  for (const raw of text.split('\n')) {
    // indented PEM (pasted from YAML or mail) and CRLF files read as plain PEM
    const line = raw.trim();
    const begin = beginLine.exec(line);
    if (open) {
      if (begin) throw new PemError(source, open.label, blocks, true);
      open.lines.push(line);
      if (line === `-----END ${open.label}-----`) {
        blocks.push({ label: open.label, pem: `${open.lines.join('\n')}\n` });
        open = null;
      }
    } else if (begin) {
      open = { label: begin[1] as string, lines: [`-----BEGIN ${begin[1] as string}-----`] };
    }
  }
  if (open) throw new PemError(source, open.label, blocks, false);
  return blocks;
}

/**
 * Parses one PEM certificate and decodes what Node decodes only when first
 * asked for — the public key — so that a corrupted certificate (a flipped
 * byte in its key: the DER still parses, the EC point is off its curve) is
 * refused here, with a reason, instead of throwing OpenSSL's bare "decode
 * error" from a getter in code that trusted an already loaded certificate.
 * The @peculiar/x509 parse later code relies on (signature algorithm,
 * subject name) is checked too. `problem` has no file name and no fix: the
 * caller adds both.
 */
export function decodeCertificate(pem: string): { ok: true; cert: X509Certificate } | { ok: false; problem: string } {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch (err) {
    return { ok: false, problem: `does not parse (${(err as Error).message})` };
  }
  try {
    void cert.publicKey;
  } catch (err) {
    return { ok: false, problem: `(${cert.subject.split('\n').join(', ') || 'empty subject'}) has a public key that does not decode (${(err as Error).message}): the file is corrupted` };
  }
  try {
    void new x509.X509Certificate(cert.raw).subjectName;
  } catch (err) {
    return { ok: false, problem: `(${cert.subject.split('\n').join(', ') || 'empty subject'}) does not decode (${(err as Error).message}): the file is corrupted` };
  }
  return { ok: true, cert };
}
