import assert from "node:assert/strict";
import { newUid } from "../cluster/remoting/node.ts";
import { DEFAULT_NODE_TIMINGS } from "../cluster/timings.ts";
import { type ProcessorConfig, ProcessorError, ProcessorNode } from "../node/processor_node.ts";
import { nodePorts } from "./support/cluster.ts";
import {
  BROKERS,
  createTopic,
  deleteTopics,
  knownPurchases,
  producePurchases,
  testKafka,
  uniqueName,
} from "./support/kafka.ts";

function config(topic: string, group: string, ports = nodePorts(1)[0]): ProcessorConfig {
  return {
    self: { address: `127.0.0.1:${ports.remoting}`, uid: newUid() },
    host: "127.0.0.1",
    remotingPort: ports.remoting,
    mgmtHost: "127.0.0.1",
    mgmtPort: ports.mgmt,
    grpcHost: "127.0.0.1",
    grpcPort: ports.grpc,
    seeds: [`127.0.0.1:${ports.remoting}`],
    clusterName: "in-process",
    brokers: BROKERS,
    topic,
    group,
    partitions: 4,
    partitionsRequired: false,
    state: "kafka",
    timings: DEFAULT_NODE_TIMINGS,
  };
}

// kafkajs and the transactional producers keep timers of their own past close; the test checks what matters itself.
Deno.test({
  name: "a ProcessorNode runs in the test's own process: it consumes, answers, and leaves with exit code 0",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const topic = uniqueName("in-process");
    const group = `${topic}-group`;
    const kafka = testKafka();
    try {
      await createTopic(topic, 4);
      const purchases = knownPurchases(200, 10, 5);
      await producePurchases(kafka, topic, purchases);
      const node = await ProcessorNode.start(config(topic, group));
      const stop = Promise.withResolvers<void>();
      const running = node.run(stop.promise);
      const expected = new Map<string, number>();
      for (const p of purchases) expected.set(p.userId, (expected.get(p.userId) ?? 0) + p.quantity * p.price);
      const deadline = Date.now() + 60_000;
      for (const [userId, amount] of expected) {
        while ((await node.sharding.region.userTotals(userId).catch(() => undefined))?.amountSpent !== amount) {
          if (Date.now() > deadline) assert.fail(`user ${userId} did not reach ${amount} within 60 s`);
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
      assert.equal(node.pipeline.stats.events, purchases.length);
      stop.resolve();
      assert.equal(await running, 0);
    } finally {
      await deleteTopics(topic);
      await deleteTopics(group);
    }
  },
});

Deno.test({
  name: "a ProcessorNode that cannot bind its port says so in one line, and leaves nothing running",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const topic = uniqueName("in-process-port");
    const ports = nodePorts(1)[0];
    const taken = Deno.listen({ hostname: "127.0.0.1", port: ports.remoting });
    try {
      await assert.rejects(
        ProcessorNode.start(config(topic, `${topic}-group`, ports)),
        (error: unknown) =>
          error instanceof ProcessorError &&
          error.message === `remoting port 127.0.0.1:${ports.remoting} is already in use`,
      );
      // The management port was not left bound either.
      const probe = Deno.listen({ hostname: "127.0.0.1", port: ports.mgmt });
      probe.close();
    } finally {
      taken.close();
      await deleteTopics(topic);
    }
  },
});
