import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { configDigest, type Config } from '../config/index.js';
import { fleetSchema, type InstanceRecord, type ServedCertificate } from '../state/index.js';
import type { ConfigGeneration, Listening } from './data-plane.js';
import type { ReloadOutcome } from './reloader.js';

/**
 * The version in package.json, two folders up from this file both in
 * src/supervisor/ (through tsx) and in dist/supervisor/. Read, not imported:
 * an import would pull package.json, outside rootDir src/, into the build.
 */
const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

/** What the control plane knows about what it serves now. */
export interface InstanceFacts {
  readonly accepted: ConfigGeneration;
  readonly acceptedAt: Date;
  readonly lastReload: ReloadOutcome | null;
  readonly listening: Listening;
  /** The admin listener's address as bound ("127.0.0.1:9443"), or null. */
  readonly admin: string | null;
}

/**
 * Who this process is, fixed at start: hostname/pid/6 random hex digits. The
 * hostname names the machine or the pod; the pid tells processes of one
 * machine apart; the random part keeps a restarted process (a container's
 * PID 1, a reused pid) from taking over a dead one's record. Not
 * configurable: two instances given the same id would overwrite each other's
 * record and hide one of them.
 */
export class InstanceIdentity {
  readonly hostname = hostname();
  readonly pid = process.pid;
  readonly id = `${this.hostname}/${this.pid}/${randomBytes(3).toString('hex')}`;
  readonly startedAt = new Date();
}

/** The certificates a config serves, per site, as provisioned (leaf serials). */
function servedCertificates(config: Config): ServedCertificate[] {
  return config.sites.flatMap((site) =>
    site.certificates.map((c) => ({ site: site.id, serial: c.leaf.serialNumber.toUpperCase(), notAfter: new Date(c.leaf.validTo).toISOString(), key: c.keyDescription })),
  );
}

/** The config digest of a generation, computed once per generation (the heartbeat asks every few seconds). */
const digests = new WeakMap<ConfigGeneration, string>();
function digestOf(generation: ConfigGeneration): string {
  let digest = digests.get(generation);
  if (digest === undefined) {
    digest = configDigest(generation.text, generation.config);
    digests.set(generation, digest);
  }
  return digest;
}

/** This instance as it describes itself: in the fleet registry and in answer to `portcullis status`. */
export function describeInstance(identity: InstanceIdentity, facts: InstanceFacts, now = new Date()): InstanceRecord {
  const { config, generation } = facts.accepted;
  const reload = facts.lastReload;
  return {
    schema: fleetSchema,
    id: identity.id,
    hostname: identity.hostname,
    pid: identity.pid,
    version,
    node: process.version,
    cluster: config.state.backend === 'redis' ? config.state.redis.cluster : null,
    startedAt: identity.startedAt.toISOString(),
    uptimeSeconds: Math.floor((now.getTime() - identity.startedAt.getTime()) / 1000),
    heartbeatAt: now.toISOString(),
    generation,
    configDigest: digestOf(facts.accepted),
    configAppliedAt: facts.acceptedAt.toISOString(),
    lastReload: reload && {
      ok: reload.result.ok,
      code: reload.result.ok ? null : reload.result.code,
      message: reload.result.message,
      trigger: reload.trigger,
      at: reload.at.toISOString(),
    },
    certificates: servedCertificates(config),
    listeners: { https: facts.listening.https, http: facts.listening.http, admin: facts.admin },
    workers: facts.listening.workers,
  };
}
