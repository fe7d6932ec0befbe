// @peculiar/x509 needs reflect-metadata loaded first and a WebCrypto provider.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

// Node's webcrypto implements the standard Crypto interface that the library types as lib.dom's Crypto
type DomCrypto = Parameters<x509.CryptoProvider['set']>[1];
x509.cryptoProvider.set(webcrypto as unknown as DomCrypto);

export { x509 };

const pemBlock = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n[\s\S]*?-----END \1-----/g;

/** The PEM blocks of a file, each with its label ("CERTIFICATE", "PRIVATE KEY" …), in order. */
export function pemBlocks(text: string): { label: string; pem: string }[] {
  return [...text.matchAll(pemBlock)].map((m) => ({ label: m[1] as string, pem: `${m[0]}\n` }));
}
