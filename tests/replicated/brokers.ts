/**
 * The three-broker cluster of these tests, as a test handles it: which
 * broker leads a topic's partitions, kill -9 of a broker, a graceful stop,
 * and starting whatever is down again (`cluster.sh`, i.e. `scripts/kafka.sh`).
 *
 * @module
 */
import { Admin } from "@platformatic/kafka";
import { BROKERS } from "../support/kafka.ts";
import { eventually } from "../support/wait.ts";

const CLUSTER = new URL("./cluster.sh", import.meta.url).pathname;

async function cluster(...args: string[]): Promise<string> {
  const output = await new Deno.Command("bash", { args: [CLUSTER, ...args], stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder();
  if (!output.success) throw new Error(`cluster.sh ${args.join(" ")}: ${text.decode(output.stderr)}`);
  return text.decode(output.stdout).trim();
}

/** Node ids (1..3) leading `topic`'s partitions, each with how many it leads, most first. */
export async function leaders(topic: string): Promise<[broker: number, partitions: number][]> {
  const admin = new Admin({ clientId: "usershard-test", bootstrapBrokers: [...BROKERS] });
  try {
    const metadata = await admin.metadata({ topics: [topic], forceUpdate: true });
    const counts = new Map<number, number>();
    for (const partition of metadata.topics.get(topic)?.partitions ?? []) {
      counts.set(partition.leader, (counts.get(partition.leader) ?? 0) + 1);
    }
    return [...counts].sort((a, b) => b[1] - a[1]);
  } finally {
    await admin.close();
  }
}

/** Waits until every partition of `topics` has all three replicas in sync again. */
export async function fullyReplicated(topics: readonly string[], timeoutMs = 120_000): Promise<void> {
  const admin = new Admin({ clientId: "usershard-test", bootstrapBrokers: [...BROKERS] });
  let short = "";
  try {
    await eventually(
      "every partition with three replicas in sync",
      async () => {
        try {
          const metadata = await admin.metadata({ topics: [...topics], forceUpdate: true });
          short = topics.flatMap((t) =>
            (metadata.topics.get(t)?.partitions ?? []).flatMap((p, i) =>
              p.isr.length < 3 ? [`${t}/${i}: ${p.isr}`] : []
            )
          ).slice(0, 5).join(", ");
          return short === "";
        } catch (error) {
          short = String(error);
          return false;
        }
      },
      timeoutMs,
      () => `out of sync: ${short}`,
      500,
    );
  } finally {
    await admin.close();
  }
}

/** kill -9 of broker `n`: no controlled shutdown, no leadership handed over. */
export async function killBroker(n: number): Promise<void> {
  Deno.kill(Number(await cluster("pid", String(n))), "SIGKILL");
}

/** Stops broker `n` the way an operator does (a controlled shutdown). */
export async function stopBroker(n: number): Promise<void> {
  await cluster("stop-broker", String(n));
}

/** Starts every broker that is down and waits until all three answer. */
export async function startBrokers(): Promise<void> {
  await cluster("start");
}
