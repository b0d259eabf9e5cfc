/**
 * `usershard rebuild` on three brokers: the changelog it creates again keeps
 * the copies the old one had, not the brokers' default, so a cluster set up
 * with `--replication-factor` stays as safe after a rebuild as before.
 */
import assert from "node:assert/strict";
import { runUsershard } from "../support/cli.ts";
import { BROKERS, createTopic, testKafka, uniqueName, withTopic } from "../support/kafka.ts";

Deno.test("rebuild creates the changelog again with the copies it had", async () => {
  await withTopic("replicated-rebuild", async (topic) => {
    const kafka = testKafka();
    await createTopic(topic, 4);
    const group = uniqueName("replicated-rebuild-group");
    const changelog = `${group}-changelog`;
    const admin = kafka.admin();
    await admin.connect();
    try {
      // Two copies where the brokers' default is three, as `--replication-factor 2` makes it.
      await admin.createTopics({
        topics: [{ topic: changelog, numPartitions: 4, replicationFactor: 2, configEntries: [] }],
        waitForLeaders: true,
      });
      const rebuilt = await runUsershard([
        "rebuild",
        "--topic",
        topic,
        "--group",
        group,
        "--brokers",
        BROKERS.join(","),
      ]);
      assert.equal(rebuilt.code, 0, rebuilt.stderr);
      const { topics } = await admin.fetchTopicMetadata({ topics: [changelog] });
      assert.deepEqual(topics[0].partitions.map((p) => p.replicas.length), [2, 2, 2, 2]);
    } finally {
      await admin.deleteTopics({ topics: [changelog] }).catch(() => {});
      await admin.disconnect();
    }
  });
});
