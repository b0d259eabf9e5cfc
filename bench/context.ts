/**
 * What every benchmark gets: where Kafka is, and one way to print a figure.
 *
 * @module
 */

/** Shared settings and the reporter of the benchmark run. */
export interface BenchContext {
  readonly brokers: readonly string[];
  /** Prints one figure: what was measured, the headline value, and the details behind it. */
  report(name: string, value: string, details?: Record<string, string | number>): void;
}

/** A fresh topic name, so runs never read each other's events. */
export function uniqueTopic(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 6)}`;
}

/** The context for a run against `KAFKA_BROKERS` (default `localhost:9092`), printing to stdout. */
export function benchContext(): BenchContext {
  return {
    brokers: (Deno.env.get("KAFKA_BROKERS") ?? "localhost:9092").split(","),
    report(name, value, details = {}) {
      const extra = Object.entries(details).map(([k, v]) => `${k}=${v}`).join(" ");
      console.log(`${name.padEnd(48)} ${value.padStart(16)}  ${extra}`);
    },
  };
}
