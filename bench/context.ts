/**
 * What every benchmark gets: where Kafka is, and one way to print a figure.
 *
 * @module
 */
import { deleteTopics, uniqueName } from "../tests/support/kafka.ts";

/** Shared settings and the reporter of the benchmark run. */
export interface BenchContext {
  readonly brokers: readonly string[];
  /** Prints one figure: what was measured, the headline value, and the details behind it. */
  report(name: string, value: string, details?: Record<string, string | number>): void;
}

const RUN = uniqueName("bench");

/** A fresh topic or group name, so runs never read each other's events. */
export function uniqueTopic(prefix: string): string {
  return uniqueName(`${RUN}-${prefix}`);
}

/** Deletes the topics this run created, so the broker does not pile up partitions. */
export function deleteBenchTopics(): Promise<void> {
  return deleteTopics(RUN);
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
