import assert from "node:assert/strict";
import { ensureTopic } from "../kafka/admin.ts";
import { testAdmin, withTopic } from "./support/kafka.ts";

Deno.test("nodes starting together on a new topic: one creates it, every one gets its partition count", async () => {
  for (let round = 0; round < 5; round++) {
    await withTopic("topic-race", async (topic) => {
      const admins = Array.from({ length: 4 }, (_, i) => testAdmin(`usershard-test-${i}`));
      try {
        const infos = await Promise.all(admins.map((admin) => ensureTopic(admin, topic, 64)));
        assert.deepEqual(infos.map((info) => info.partitions), [64, 64, 64, 64], `round ${round}`);
        assert.ok(infos.filter((info) => info.created).length <= 1, `round ${round}: created twice`);
      } finally {
        await Promise.all(admins.map((admin) => admin.close()));
      }
    });
  }
});
