import type { Histogram, Metric, MetricType, Registry } from 'prom-client';

/** What prom-client's own histograms give the registry (their bucket values carry `le` besides the label). */
type Exposition = Omit<Awaited<ReturnType<Histogram<'site' | 'le'>['get']>>, 'collect'>;

interface Series {
  readonly site: string;
  /** Observations per bucket (not cumulative); the last slot is +Inf. */
  readonly counts: number[];
  sum: number;
  count: number;
}

/**
 * A Prometheus histogram labelled by site, for the request path: an
 * observation finds its series by the site's name and adds to plain numbers,
 * where prom-client's Histogram hashes its label set on every observation.
 * The registry reads it as it reads prom-client's own histograms (`get()`),
 * in the same exposition and with the same cluster aggregation (sum), so a
 * scrape cannot tell them apart. Not safe to share between registries.
 */
export class SiteHistogram {
  // prom-client types `type` as a numeric enum that does not exist at run time; the registry prints the string
  readonly type = 'histogram' as unknown as MetricType;
  readonly aggregator = 'sum';
  readonly #series = new Map<string, Series>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Metric);
  }

  observe(site: string, value: number): void {
    let series = this.#series.get(site);
    if (series === undefined) {
      series = { site, counts: new Array<number>(this.buckets.length + 1).fill(0), sum: 0, count: 0 };
      this.#series.set(site, series);
    }
    let i = 0;
    while (i < this.buckets.length && value > (this.buckets[i] as number)) i++;
    (series.counts[i] as number)++;
    series.sum += value;
    series.count++;
  }

  get(): Promise<Exposition> {
    const bucket = `${this.name}_bucket`;
    const values: Exposition['values'] = [];
    for (const s of this.#series.values()) {
      let cumulative = 0;
      this.buckets.forEach((le, i) => {
        cumulative += s.counts[i] as number;
        values.push({ metricName: bucket, labels: { le, site: s.site }, value: cumulative });
      });
      values.push(
        { metricName: bucket, labels: { le: '+Inf', site: s.site }, value: s.count },
        { metricName: `${this.name}_sum`, labels: { site: s.site }, value: s.sum },
        { metricName: `${this.name}_count`, labels: { site: s.site }, value: s.count },
      );
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values });
  }

  reset(): void {
    this.#series.clear();
  }
}
