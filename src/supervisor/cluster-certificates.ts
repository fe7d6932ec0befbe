import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ChallengeBoard, SharedAcmeCertificates, SharedChallenges, type AcmeChallengeSet, type AcmeManagerOptions } from '../acme/index.js';
import { readLeniently, readStateSettings } from '../config/index.js';
import type { Logger } from '../observe/index.js';
import { CaStore, clusterCaReplica, followClusterCa, type CaReplica } from '../pki/index.js';
import { caFolder, RedisLink } from '../state/index.js';
import type { ReloadResult, ReloadTrigger } from './reloader.js';

/** What following the cluster asks of the running instance. */
export interface ClusterCertificatesPort {
  reload(trigger: ReloadTrigger): Promise<ReloadResult>;
  setAcmeChallenges(set: AcmeChallengeSet): Promise<unknown>;
}

/** CA files whose change needs a reload: internal certificates are issued anew by it, clientAuth CA files re-read. */
const caCertificates = new Set(['ca.pem', 'ca.key', 'issuing.pem', 'issuing.key']);

/**
 * The certificates a cluster (`state.backend: redis`) shares, for one
 * instance: the built-in CA (one for the fleet, `pki/ca-replica.ts`), ACME
 * certificates (ordered once, copied by every instance, `acme/shared-
 * certificates.ts`) and ACME challenge answers (given by every instance,
 * `acme/shared-challenges.ts`). `join` runs before the first load of the
 * config; `follow` once the instance serves.
 */
export class ClusterCertificates {
  readonly caReplica: CaReplica;
  readonly #acme: SharedAcmeCertificates;
  #stops: (() => void)[] = [];

  constructor(
    private readonly link: RedisLink,
    private readonly dataDir: string,
    private readonly log: Logger,
  ) {
    this.caReplica = clusterCaReplica(link, log);
    this.#acme = new SharedAcmeCertificates(link, dataDir, log);
  }

  /**
   * Makes dataDir current before a load: the cluster's CA (created and
   * recorded when the cluster has none yet, or this machine's recorded when
   * it has one and the cluster not), and every ACME certificate the cluster
   * holds. Rejects when Redis fails: the instance does not start on a CA
   * that may not be the cluster's.
   */
  async join(): Promise<void> {
    await CaStore.open(this.dataDir, { replica: this.caReplica });
    await this.#acme.pullAll();
  }

  /**
   * Follows the cluster once the instance serves: another instance's ACME
   * certificate or CA change is copied into dataDir and reloaded, every
   * instance's challenge answers are put in force here. Resolves with the
   * ACME manager's options for a cluster: challenges published to every
   * instance, a stored certificate copied and announced before the reload,
   * and a waiter taking the certificate another instance stored.
   */
  async follow(port: ClusterCertificatesPort): Promise<Pick<AcmeManagerOptions, 'board' | 'issued' | 'shared'>> {
    const challenges = new SharedChallenges(this.link, randomUUID(), (set) => port.setAcmeChallenges(set), this.log);
    this.#stops.push(() => challenges.stop());
    await challenges.start();
    this.#stops.push(await this.#acme.follow(() => void port.reload('acme certificate issued')));
    this.#stops.push(
      await followClusterCa(this.link, this.caReplica, caFolder(this.dataDir), this.log, (files) => {
        if (files.some((f) => caCertificates.has(f))) void port.reload('certificate files changed');
      }),
    );
    return {
      board: new ChallengeBoard((set) => challenges.publish(set)),
      issued: async (site) => {
        await this.#acme.stored(site);
        return port.reload('acme certificate issued');
      },
      shared: true,
    };
  }

  stop(): void {
    for (const stop of this.#stops) stop();
    this.#stops = [];
  }
}

/**
 * For `portcullis start`, before the strict load of the config: with
 * `state.backend: redis`, joins the cluster (`ClusterCertificates.join`)
 * through a connection of its own, closed after. Refuses to start
 * (PCL_STATE_UNREACHABLE) when Redis does not answer.
 */
export async function joinClusterBeforeLoad(file: string, log: Logger): Promise<void> {
  const settings = readStateSettings(file);
  if (settings.backend !== 'redis') return;
  const link = await RedisLink.open(settings.redis, log);
  try {
    await new ClusterCertificates(link, readLeniently(readFileSync(file, 'utf8'), file).dataDir, log).join();
  } finally {
    await link.close();
  }
}
