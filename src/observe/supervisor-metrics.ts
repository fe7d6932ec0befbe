import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Metrics of the process that supervises (the single process, or the cluster
 * primary): reloads and certificate rotations, partner enrollments. Counted
 * once per instance, however many workers apply a reload.
 */
export class SupervisorMetrics {
  readonly registry = new Registry();

  readonly reloads = new Counter<'trigger' | 'result' | 'code'>({
    name: 'portcullis_reloads_total',
    help: 'Reloads by trigger (signal, control, files, renewal), result (applied, refused) and error code when refused',
    labelNames: ['trigger', 'result', 'code'],
    registers: [this.registry],
  });

  readonly lastReloadSuccessful = new Gauge({
    name: 'portcullis_config_last_reload_successful',
    help: '1 when the last reload was applied (or none was tried), 0 when it was refused and an older config keeps serving',
    registers: [this.registry],
  });

  readonly certificateRotations = new Counter<'site'>({
    name: 'portcullis_certificate_rotations_total',
    help: 'Certificates swapped in by a reload, per site (refused rotations count in portcullis_reloads_total{result="refused"})',
    labelNames: ['site'],
    registers: [this.registry],
  });

  readonly enrollments = new Counter<'result'>({
    name: 'portcullis_enrollments_total',
    help: 'Enrollment requests on the admin listener by result: issued, or the reason code of the refusal',
    labelNames: ['result'],
    registers: [this.registry],
  });

  readonly acmeOrders = new Counter<'site' | 'result' | 'reason'>({
    name: 'portcullis_acme_orders_total',
    help: 'ACME orders by site and result (started, succeeded, failed); reason is the ACME problem type (rejectedIdentifier, connection …) or unreachable, untrusted_server, failed',
    labelNames: ['site', 'result', 'reason'],
    registers: [this.registry],
  });

  readonly acmeNextRenewal = new Gauge<'site'>({
    name: 'portcullis_acme_next_renewal_timestamp_seconds',
    help: 'When the ACME certificate of the site is next ordered (unix time): its renewal time, or the next retry after a failure',
    labelNames: ['site'],
    registers: [this.registry],
  });

  constructor() {
    // the process's own CPU, memory, event loop (with workers, each worker adds its own to the instance's registry)
    collectDefaultMetrics({ register: this.registry });
    this.lastReloadSuccessful.set(1);
  }
}
