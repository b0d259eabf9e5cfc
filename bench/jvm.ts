/**
 * The JVM contenders of the throughput benchmarks, on the same topic in the
 * same run: one Java consumer thread parsing each value (the client's
 * ceiling), and Kafka Streams doing usershard's aggregation exactly once
 * with RocksDB and a changelog, two instances as usershard has two nodes
 * (`bench/jvm/*.java`, fetched and compiled by `bench/jvm/build.sh`).
 *
 * @module
 */
import type { Admin } from "kafkajs";
import { eventually } from "../tests/support/wait.ts";
import { uniqueTopic } from "./context.ts";

const BUILD = new URL("./jvm/build.sh", import.meta.url).pathname;
const QUIET = "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn";

/** The classpath of the JVM contenders, or why they cannot run here. */
export async function jvmClasspath(): Promise<{ classpath: string } | { reason: string }> {
  const output = await new Deno.Command("bash", { args: [BUILD], stdout: "piped", stderr: "piped" }).output()
    .catch((error: Error) => ({
      success: false,
      stdout: new Uint8Array(),
      stderr: new TextEncoder().encode(error.message),
    }));
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes).trim();
  if (!output.success) return { reason: text(output.stderr).split("\n").at(-1) ?? "bench/jvm/build.sh failed" };
  return { classpath: text(output.stdout) };
}

/** One Java consumer thread reading `events` of `topic` and parsing each value; events/s. */
export async function javaConsume(
  classpath: string,
  brokers: readonly string[],
  topic: string,
  events: number,
): Promise<number> {
  const output = await new Deno.Command("java", {
    args: [QUIET, "-cp", classpath, "JavaConsume", brokers.join(","), topic, String(events)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) throw new Error(`JavaConsume failed: ${new TextDecoder().decode(output.stderr).trim()}`);
  return (JSON.parse(new TextDecoder().decode(output.stdout)) as { rate: number }).rate;
}

/** A running JVM whose standard error is kept for when it fails. */
interface Jvm {
  readonly child: Deno.ChildProcess;
  readonly stderr: Promise<string>;
  exit?: number;
}

function startJvm(args: readonly string[]): Jvm {
  const child = new Deno.Command("java", { args: [...args], stdout: "null", stderr: "piped" }).spawn();
  // Read as it comes, so that the JVM never blocks on a full pipe.
  const jvm: Jvm = { child, stderr: new Response(child.stderr).text() };
  child.status.then((status) => (jvm.exit = status.code));
  return jvm;
}

/**
 * Two Kafka Streams instances in a fresh application draining `topic`;
 * events/s from the group's first committed progress to every partition
 * committed to its end, as usershard's drain is timed from its first event.
 * An instance that exits (Kafka Streams failed) fails the drain at once,
 * with the end of what it printed.
 */
export async function streamsDrain(
  classpath: string,
  brokers: readonly string[],
  admin: Admin,
  topic: string,
): Promise<number> {
  const application = uniqueTopic("bench-streams");
  const stateDir = await Deno.makeTempDir({ prefix: "usershard-bench-streams-" });
  const ends = await admin.fetchTopicOffsets(topic);
  const total = ends.reduce((sum, p) => sum + Number(p.high), 0);
  const instances: Jvm[] = [];
  try {
    for (const i of [0, 1]) {
      instances.push(
        startJvm([QUIET, "-cp", classpath, "StreamsTotals", brokers.join(","), topic, application, `${stateDir}/${i}`]),
      );
    }
    let first: { at: number; committed: number } | undefined;
    await eventually(`Kafka Streams drains ${topic}`, async () => {
      const failed = instances.find((instance) => instance.exit !== undefined);
      if (failed) {
        const said = (await failed.stderr).trim().split("\n").slice(-5).join(" | ");
        throw new Error(`a Kafka Streams instance exited with ${failed.exit}: ${said}`);
      }
      const [offsets] = await admin.fetchOffsets({ groupId: application, topics: [topic] });
      const committed = offsets.partitions.reduce((sum, p) => sum + Math.max(0, Number(p.offset)), 0);
      if (first === undefined && committed > 0) first = { at: performance.now(), committed };
      return committed >= total;
    }, 900_000);
    return (total - first!.committed) / ((performance.now() - first!.at) / 1000);
  } finally {
    for (const instance of instances) if (instance.exit === undefined) instance.child.kill("SIGKILL");
    await Promise.all(instances.map((instance) => instance.child.status));
    await Deno.remove(stateDir, { recursive: true });
  }
}
