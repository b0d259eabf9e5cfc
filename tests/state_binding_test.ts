/**
 * State bound to its input, against the real broker and real nodes: the two
 * operator steps that used to lose every total without a word (the input
 * topic deleted and created again; the changelog deleted while the group
 * kept its offsets) are refused with one line, and `usershard rebuild`
 * then counts the topic again, exactly.
 */
import assert from "node:assert/strict";
import { runUsershard } from "./support/cli.ts";
import { nodePorts, ready, startProcessor, type Stream, withNodes } from "./support/cluster.ts";
import { BROKERS, createTopic, knownPurchases, producePurchases, testKafka } from "./support/kafka.ts";
import type { RunningUsershard } from "./support/process.ts";
import { exactOnEveryNode } from "./support/totals.ts";

/** Starts a node on `stream` that must refuse to go on: its exit code and last line. */
async function refusedStart(started: RunningUsershard[], stream: Stream): Promise<{ code: number; line: string }> {
  const [ports] = nodePorts(1);
  const node = startProcessor(ports, [ports], stream);
  started.push(node);
  const { code } = await node.exited(90_000);
  const line = node.stderr.trim().split("\n").at(-1) ?? "";
  return { code, line };
}

/** Stops `node` gracefully and waits for exit 0. */
async function stop(node: RunningUsershard): Promise<void> {
  node.kill("SIGTERM");
  assert.equal((await node.exited(60_000)).code, 0, node.stderr.split("\n").slice(-10).join("\n"));
}

const rebuildArgs = (stream: Stream) => [
  "rebuild",
  ...["--topic", stream.topic, "--group", stream.group, "--brokers", BROKERS.join(",")],
];

Deno.test("the topic deleted and created again: the node refuses with one line; rebuild counts the new topic", async () => {
  await withNodes("binding-recreated", async (started, stream) => {
    const kafka = testKafka();
    await createTopic(stream.topic, 8);
    await producePurchases(kafka, stream.topic, knownPurchases(300, 60, 1));
    const [ports] = nodePorts(1);
    const first = startProcessor(ports, [ports], stream);
    started.push(first);
    await exactOnEveryNode(kafka, stream.topic, [ports]);
    await stop(first);

    const admin = kafka.admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [stream.topic] });
    await admin.disconnect();
    for (let tries = 0;; tries++) {
      try {
        await createTopic(stream.topic, 8);
        break;
      } catch (error) {
        if (tries > 50) throw error;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
    await producePurchases(kafka, stream.topic, knownPurchases(200, 60, 2));

    const refused = await refusedStart(started, stream);
    assert.equal(refused.code, 1);
    assert.match(
      refused.line,
      new RegExp(
        `^usershard process: changelog ${stream.group}-changelog partition \\d+ counts another incarnation of ` +
          `${stream.topic} \\(topic id \\S+\\) up to offset \\d+, but ${stream.topic} is now topic id \\S+ and ` +
          `${stream.topic}/\\d+ ends at offset \\d+ .*usershard rebuild --topic ${stream.topic} --group ${stream.group}`,
      ),
    );

    const rebuilt = await runUsershard(rebuildArgs(stream));
    assert.equal(rebuilt.code, 0, rebuilt.stderr);
    assert.match(
      rebuilt.stdout,
      new RegExp(`rebuilding group ${stream.group} from ${stream.topic} \\(8 partitions, 200 events: every event\\)`),
    );
    const again = startProcessor(ports, [ports], stream);
    started.push(again);
    // Exactly the new topic's events: none of the old totals, none of the new events skipped.
    await exactOnEveryNode(kafka, stream.topic, [ports]);
  });
});

Deno.test("the changelog deleted while the group kept its offsets: refused with what was lost; rebuild recounts", async () => {
  await withNodes("binding-lost", async (started, stream) => {
    const kafka = testKafka();
    await createTopic(stream.topic, 8);
    await producePurchases(kafka, stream.topic, knownPurchases(300, 60, 3));
    const [ports] = nodePorts(1);
    const first = startProcessor(ports, [ports], stream);
    started.push(first);
    await exactOnEveryNode(kafka, stream.topic, [ports]);

    // While a node of the group runs, a rebuild is refused.
    const early = await runUsershard(rebuildArgs(stream));
    assert.equal(early.code, 1);
    assert.match(early.stderr, new RegExp(`^usershard rebuild: group ${stream.group} has 1 members running \\(`));
    await stop(first);

    const admin = kafka.admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [`${stream.group}-changelog`] });
    await admin.disconnect();

    const refused = await refusedStart(started, stream);
    assert.equal(refused.code, 1);
    assert.match(
      refused.line,
      new RegExp(
        `^usershard process: changelog topic ${stream.group}-changelog is missing, but group ${stream.group} has ` +
          `counted 300 offsets of ${stream.topic} on \\d+ partitions: the totals counted so far are lost with it; ` +
          `${stream.topic} still holds every event .*: usershard rebuild --topic ${stream.topic} --group ${stream.group}`,
      ),
    );
    assert.doesNotMatch(refused.line, /delete it/);

    const rebuilt = await runUsershard(rebuildArgs(stream));
    assert.equal(rebuilt.code, 0, rebuilt.stderr);
    started.push(startProcessor(ports, [ports], stream));
    await exactOnEveryNode(kafka, stream.topic, [ports]);
  });
});

Deno.test("nodes of one group that keep state differently (--state) refuse to work together", async () => {
  await withNodes("binding-state", async (started, stream) => {
    await createTopic(stream.topic, 4);
    const [a, b] = nodePorts(2);
    const durable = startProcessor(a, [a, b], stream);
    started.push(durable);
    await ready(durable, a, 60_000);
    const memory = startProcessor(b, [a, b], stream, ["--state", "memory"]);
    started.push(memory);
    const { code } = await memory.exited(60_000);
    assert.equal(code, 1);
    assert.match(
      memory.stderr.trim().split("\n").at(-1) ?? "",
      /^usershard process: this cluster keeps shard state durably \(--state kafka\) but 127\.0\.0\.1:\d+ keeps it in memory only \(--state memory\); nodes with different --state cannot work together/,
    );
    assert.ok(durable.running, "the cluster's own node carries on");
  });
});
