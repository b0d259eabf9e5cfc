/**
 * `deno task demo --exit` end to end, as a user runs it: the seed's
 * walkthrough against the test broker, on free ports, with a topic and group
 * of its own. It must print every step's headline in order with the figures
 * that prove it, exit 0, and leave none of its ports taken.
 *
 * @module
 */
import assert from "node:assert/strict";
import { portFree } from "../scripts/demo/ports.ts";
import { BROKERS, deleteTopics, uniqueName } from "./support/kafka.ts";

const DEMO = new URL("../scripts/demo.ts", import.meta.url).pathname;
// The walkthrough takes about 20 s here; a broker busy with other tests' topics can make it several times that.
const DEMO_BOUND_MS = 180_000;
// After SIGTERM the demo stops its nodes (each within a minute) before it exits.
const STOP_BOUND_MS = 70_000;

/** The first port of the system's ephemeral range (Linux), `undefined` where it cannot be read. */
function ephemeralPortsFrom(): number | undefined {
  try {
    const first = Number(Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range").trim().split(/\s+/)[0]);
    return Number.isInteger(first) ? first : undefined;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/**
 * A base port with it and the `count - 1` after it free on loopback a
 * moment ago. Below the ephemeral range where there is room: the demo starts
 * its second node seconds after this pick, and meanwhile any outgoing
 * connection (a Kafka client's, say) may be given a port in that range.
 */
function freePortRange(count: number): number {
  const ephemeral = ephemeralPortsFrom() ?? 0;
  const [from, to] = ephemeral > 11_000 ? [10_000, ephemeral - count] : [20_000, 60_000];
  for (let attempt = 0; attempt < 200; attempt++) {
    const base = from + Math.floor(Math.random() * (to - from));
    const held: Deno.Listener[] = [];
    try {
      for (let port = base; port < base + count; port++) held.push(Deno.listen({ hostname: "127.0.0.1", port }));
      return base;
    } catch (error) {
      if (!(error instanceof Deno.errors.AddrInUse)) throw error;
    } finally {
      for (const listener of held) listener.close();
    }
  }
  throw new Error(`found no ${count} consecutive free ports`);
}

/** The demo's output as headlines (unindented lines), each with the figure lines under it. */
function sections(stdout: string): { headline: string; figures: string[] }[] {
  const out: { headline: string; figures: string[] }[] = [];
  for (const line of stdout.split("\n").filter((l) => l.trim() !== "")) {
    if (!line.startsWith(" ")) out.push({ headline: line, figures: [] });
    else out.at(-1)?.figures.push(line.trim());
  }
  return out;
}

/** Runs the demo with `args` and `env`; a run past `DEMO_BOUND_MS` is stopped (as with Ctrl-C) and fails. */
async function runDemo(args: readonly string[], env: Record<string, string>) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", DEMO, ...args],
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = child.output();
  let late = false;
  const stopTimer = setTimeout(() => {
    late = true;
    child.kill("SIGTERM");
  }, DEMO_BOUND_MS);
  const killTimer = setTimeout(() => child.kill("SIGKILL"), DEMO_BOUND_MS + STOP_BOUND_MS);
  try {
    const result = await output;
    const decoder = new TextDecoder();
    return { late, code: result.code, stdout: decoder.decode(result.stdout), stderr: decoder.decode(result.stderr) };
  } finally {
    clearTimeout(stopTimer);
    clearTimeout(killTimer);
  }
}

async function logTails(folder: string | undefined): Promise<string> {
  if (!folder) return "(no log folder printed)";
  const parts: string[] = [];
  for await (const entry of Deno.readDir(folder)) {
    const text = await Deno.readTextFile(`${folder}/${entry.name}`);
    parts.push(`--- ${entry.name} (end) ---\n${text.split("\n").slice(-40).join("\n")}`);
  }
  return parts.join("\n");
}

Deno.test("deno task demo --exit walks the seed's scenario, proves each step, exits 0 and frees its ports", async () => {
  const topic = uniqueName("demo");
  const group = `${topic}-group`; // its changelog, `<group>-changelog`, starts with the topic's name too
  const base = freePortRange(6);
  const ports = [0, 1, 2, 3, 4, 5].map((i) => base + i);
  const [remoting1, remoting2] = ports;
  const started = performance.now();
  let logs: string | undefined;
  try {
    const run = await runDemo(["--exit"], {
      KAFKA_BROKERS: BROKERS.join(","),
      USERSHARD_DEMO_PORTS: String(base),
      USERSHARD_TOPIC: topic,
      USERSHARD_GROUP: group,
    });
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    logs = /logs go to (\S+)/.exec(run.stdout)?.[1];
    const explain = async () =>
      `demo (${seconds} s, exit ${run.code}) stdout:\n${run.stdout}\nstderr:\n${run.stderr}\n${await logTails(logs)}`;
    try {
      assert.equal(run.late, false, `the demo did not finish within ${DEMO_BOUND_MS} ms`);
      assert.equal(run.code, 0, "exit status");

      const steps = sections(run.stdout);
      const expected = [
        /^usershard demo: logs go to /,
        new RegExp(`^1\\. Kafka is up and the topic ${topic} is ready$`),
        /^2\. Node 1 starts and takes all 128 shards$/,
        /^3\. The producer starts \(10 events\/s\); node 1 processes every event locally$/,
        /^4\. Node 2 joins; Kafka reassigns partitions and the shards follow$/,
        /^5\. 64 and 64 shards, all co-located: every event is processed locally$/,
        /^6\. The same users queried on both nodes give the same totals$/,
        /^7\. The live page and the metrics$/,
        /^Stopping \(--exit\): /,
      ];
      assert.equal(steps.length, expected.length, `headlines: ${steps.map((s) => s.headline).join(" | ")}`);
      steps.forEach((step, i) => assert.match(step.headline, expected[i]));
      const figures = (step: number) => steps[step].figures.join("\n");

      // 2: node 1 alone hosts every shard.
      assert.match(
        figures(2),
        new RegExp(`/cluster/shards/${group}: 128 shards hosted \\(0-127\\), 128 partitions consumed`),
      );
      // 3: and processes every event itself.
      assert.match(figures(3), /GET \S+\/stats: (\d+) events processed, \1 of them on node 1 \(100 %\)/);
      // 4: node 2's arrival moves shards from node 1 to node 2, and the move completes.
      assert.match(
        figures(4),
        new RegExp(`rebalance started for 64 shards: 127\\.0\\.0\\.1:${remoting1} → 127\\.0\\.0\\.1:${remoting2} \\[`),
      );
      assert.match(figures(4), /rebalance of 64 shards completed in \d+ ms/);
      // 5: 64 + 64, every shard beside its partition's consumer, every event since then processed locally.
      for (const [n, remoting] of [[1, remoting1], [2, remoting2]]) {
        assert.match(
          figures(5),
          new RegExp(
            `node ${n} \\(127\\.0\\.0\\.1:${remoting}\\) hosts 64 shards \\[[\\d,-]+\\] with \\d+ users, 64/64`,
          ),
        );
      }
      assert.match(
        figures(5),
        /since the shards settled: node 1 (\d+) of \1 events locally \(100 %\), node 2 (\d+) of \2 events locally \(100 %\)/,
      );
      // 6: the same totals from both nodes, for users at home on either.
      assert.match(figures(6), /30 of 30 users answer alike/);
      const rows = steps[6].figures.map((line) => /^(\d+)\s+(\d+)\s+node ([12])\s+(\S.*?)\s{2,}(\S.*)$/.exec(line))
        .filter((m) => m !== null);
      assert.ok(rows.length >= 2, `rows of users: ${figures(6)}`);
      for (const [row, , , , first, second] of rows) assert.equal(first, second, `both nodes' answers: ${row}`);
      assert.deepEqual(new Set(rows.map((m) => m[3])), new Set(["1", "2"]), "users at home on each node");
      // 7 and the end: the URLs, then everything stopped cleanly.
      assert.match(figures(7), new RegExp(`http://127\\.0\\.0\\.1:${base + 2}/metrics`));
      assert.match(figures(8), /producer: exit 0/);
      assert.match(figures(8), /node 1: exit 0 after .*left the cluster/);
      assert.match(figures(8), /node 2: exit 0 after .*left the cluster/);
    } catch (error) {
      console.error(await explain());
      throw error;
    }
    // Every process the demo started has exited by now, so none of them may hold a port.
    assert.deepEqual(ports.filter((port) => !portFree(port)), [], `ports still taken after the demo (${ports})`);
    if (logs) await Deno.remove(logs, { recursive: true });
  } finally {
    await deleteTopics(topic);
  }
});
