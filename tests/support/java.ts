/**
 * Kafka's own Java code as a test oracle: runs `Utils.murmur2` from the
 * kafka-clients jar that `scripts/kafka.sh` fetched.
 *
 * @module
 */

const root = new URL("../../", import.meta.url).pathname;
const decoder = new TextDecoder();

async function kafkaLibs(): Promise<string> {
  const out = await new Deno.Command("bash", { args: [`${root}scripts/kafka.sh`, "libs"], stderr: "inherit" }).output();
  if (!out.success) throw new Error("scripts/kafka.sh libs failed; the Kafka jars are needed as the Java oracle");
  return decoder.decode(out.stdout).trim();
}

/** Java's answer for one key: `Utils.murmur2` and `toPositive(murmur2) % partitions`. */
export interface JavaPartition {
  readonly hash: number;
  readonly partition: number;
}

/** Asks Java's `org.apache.kafka.common.utils.Utils` for each key's hash and partition. */
export async function javaPartitions(keys: readonly Uint8Array[], partitions: number): Promise<JavaPartition[]> {
  const libs = await kafkaLibs();
  const child = new Deno.Command("java", {
    args: ["-cp", `${libs}/*`, `${root}tests/java/Murmur2.java`, String(partitions)],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const hex = keys.map((key) => Array.from(key, (b) => b.toString(16).padStart(2, "0")).join("")).join("\n");
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(hex + "\n"));
  await writer.close();
  const out = await child.output();
  if (!out.success) throw new Error(`java Murmur2 failed: ${decoder.decode(out.stderr)}`);
  const lines = decoder.decode(out.stdout).trim().split("\n");
  if (lines.length !== keys.length) throw new Error(`java answered ${lines.length} lines for ${keys.length} keys`);
  return lines.map((line) => {
    const [hash, partition] = line.split(" ").map(Number);
    return { hash, partition };
  });
}
