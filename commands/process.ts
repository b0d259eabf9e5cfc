/**
 * `usershard process`: one processor node. Joins the cluster through the seed
 * nodes, consumes its share of the topic, hosts the shards of the partitions
 * it consumes, serves management HTTP, and leaves gracefully on SIGINT/SIGTERM
 * (consumer stopped, shards handed off, Leaving → Exiting → Removed).
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { ClusterNode } from "../cluster/membership/cluster_node.ts";
import { DEFAULT_TIMINGS } from "../cluster/timings.ts";
import { json, startManagement } from "../cluster/management/management.ts";
import { newUid } from "../cluster/remoting/node.ts";
import { BindError } from "../cluster/remoting/errors.ts";
import { Sharding } from "../cluster/sharding/sharding.ts";
import { ensureTopic, partitionCount } from "../kafka/admin.ts";
import { ChangelogLayoutError, changelogTopicFor, ensureChangelog, KafkaShardStorage } from "../kafka/changelog.ts";
import { MEMORY_STORAGE, type ShardStorage } from "../cluster/sharding/shard_storage.ts";
import { groupPlacement, nodeClientId } from "../kafka/assignment.ts";
import { createKafka, kafkaErrorLine } from "../kafka/client.ts";
import { ConsumerPipeline } from "../kafka/consumer.ts";
import { partitionFor } from "../kafka/partitioner.ts";
import { GrpcBindError, startGrpcServer } from "../grpc/user_service.ts";
import { CliError, defineCommand } from "./command.ts";
import { BROKERS_FLAG, LOG_LEVEL_FLAG, PARTITIONS_FLAG, TOPIC_FLAG, topicFlag } from "./common_flags.ts";
import { onStopSignal } from "./signals.ts";
import { type CommandSpec, durationFlag, hostPortList, intFlag, portFlag, UsageError } from "./flags.ts";
import { logLevelFlag, setUpLogging } from "./logging.ts";

/** Flags of `usershard process`. */
export const processSpec = {
  name: "process",
  summary: "runs one processor node: consumes its Kafka partitions and hosts their shards",
  usage: "usershard process --remoting PORT --mgmt PORT --grpc PORT [flags]",
  flags: {
    remoting: {
      type: "string",
      value: "PORT",
      env: "USERSHARD_REMOTING_PORT",
      default: "2551",
      description: "TCP port for node-to-node messages",
    },
    mgmt: {
      type: "string",
      value: "PORT",
      env: "USERSHARD_MGMT_PORT",
      default: "8551",
      description: "management HTTP port (/cluster/members, /ready, /alive)",
    },
    grpc: {
      type: "string",
      value: "PORT",
      env: "USERSHARD_GRPC_PORT",
      default: "8081",
      description: "gRPC port for user queries",
    },
    host: {
      type: "string",
      value: "HOST",
      env: "USERSHARD_HOST",
      default: "127.0.0.1",
      description: "address to bind remoting to and to advertise to the other nodes",
    },
    "grpc-host": {
      type: "string",
      value: "HOST",
      env: "USERSHARD_GRPC_HOST",
      default: "127.0.0.1",
      description: "address to bind the gRPC front end to",
    },
    "mgmt-host": {
      type: "string",
      value: "HOST",
      env: "USERSHARD_MGMT_HOST",
      default: "127.0.0.1",
      description: "address to bind management HTTP to",
    },
    seeds: {
      type: "string",
      value: "HOST:PORT,...",
      env: "USERSHARD_SEEDS",
      default: "127.0.0.1:2551,127.0.0.1:2552",
      description: "seed nodes; the first one forms the cluster when no other seed answers",
    },
    "cluster-name": {
      type: "string",
      value: "NAME",
      env: "USERSHARD_CLUSTER_NAME",
      default: "usershard",
      description: "nodes with another cluster name are refused",
    },
    "cluster-secret": {
      type: "string",
      value: "SECRET",
      env: "USERSHARD_CLUSTER_SECRET",
      description: "shared secret every node must prove it knows; none by default",
    },
    brokers: BROKERS_FLAG,
    topic: TOPIC_FLAG,
    group: {
      type: "string",
      value: "NAME",
      env: "USERSHARD_GROUP",
      default: "user-processing",
      description: "Kafka consumer group, also the sharding type name (/cluster/shards/NAME)",
    },
    partitions: PARTITIONS_FLAG,
    "ask-timeout": {
      type: "string",
      value: "DURATION",
      env: "USERSHARD_ASK_TIMEOUT",
      default: "10s",
      description: "how long an event or query may wait for its shard (while it moves, say)",
    },
    "unreachable-after": {
      type: "string",
      value: "DURATION",
      env: "USERSHARD_UNREACHABLE_AFTER",
      default: `${DEFAULT_TIMINGS.unreachableAfterMs / 1000}s`,
      description: "a member silent this long is marked unreachable",
    },
    "down-after": {
      type: "string",
      value: "DURATION",
      env: "USERSHARD_DOWN_AFTER",
      default: `${DEFAULT_TIMINGS.downAfterMs / 1000}s`,
      description: "an unreachable member is downed (removed) after this much longer",
    },
    state: {
      type: "string",
      value: "kafka|memory",
      env: "USERSHARD_STATE",
      default: "kafka",
      description: "where shard state lives: 'kafka' keeps it in the compacted topic GROUP-changelog (exactly once, " +
        "survives crashes and restarts); 'memory' loses it with the node, for comparison",
    },
    "log-level": LOG_LEVEL_FLAG,
  },
  details: `SIGINT or SIGTERM leaves the cluster gracefully (consumer stopped, shards handed off,
Leaving, Exiting, Removed) and exits 0; another signal a second or more later exits at once.

Example, the two seed nodes of the walkthrough:
  usershard process --remoting 2551 --mgmt 8551 --grpc 8081
  usershard process --remoting 2552 --mgmt 8552 --grpc 8082`,
} as const satisfies CommandSpec;

/** How long a leaving node waits for its shards to be handed off. */
const HANDOFF_TIMEOUT_MS = 20_000;

/** `usershard process`. */
export const processCommand = defineCommand(processSpec, async (flags, positionals, sources) => {
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  const remotingPort = portFlag("remoting", flags.remoting);
  const mgmtPort = portFlag("mgmt", flags.mgmt);
  const grpcPort = portFlag("grpc", flags.grpc);
  const seeds = hostPortList("seeds", flags.seeds);
  const brokers = hostPortList("brokers", flags.brokers);
  const host = flags.host.trim();
  if (host === "" || /[\s/:]/.test(host)) {
    throw new UsageError(`--host must be a host name or IPv4 address, got '${host}'`);
  }
  const ports = [["remoting", remotingPort], ["mgmt", mgmtPort], ["grpc", grpcPort]] as const;
  for (const [i, [name, port]] of ports.entries()) {
    const same = ports.slice(i + 1).find(([, other]) => other === port);
    if (same) throw new UsageError(`--${name} and --${same[0]} must differ, both are ${port}`);
  }
  const topic = topicFlag(flags.topic);
  if (!/^[a-zA-Z0-9._-]{1,249}$/.test(flags.group)) {
    throw new UsageError(`--group must be made of letters, digits, '.', '_' and '-', got '${flags.group}'`);
  }
  const partitions = intFlag("partitions", flags.partitions, { min: 1, max: 10_000 });
  const askTimeoutMs = durationFlag("ask-timeout", flags["ask-timeout"]);
  if (flags.state !== "kafka" && flags.state !== "memory") {
    throw new UsageError(`--state must be kafka or memory, got '${flags.state}'`);
  }
  const timings = {
    ...DEFAULT_TIMINGS,
    unreachableAfterMs: durationFlag("unreachable-after", flags["unreachable-after"]),
    downAfterMs: durationFlag("down-after", flags["down-after"]),
  };
  await setUpLogging(logLevelFlag(flags["log-level"]));
  const log = getLogger(["usershard", "process"]);

  const self = { address: `${host}:${remotingPort}`, uid: newUid() };
  const kafka = createKafka({ brokers, clientId: nodeClientId(self.address) });
  const admin = kafka.admin();
  const changelog = changelogTopicFor(flags.group);
  let shardCount: number;
  try {
    await admin.connect();
    shardCount = (await ensureTopic(admin, topic, partitions, sources.partitions !== "default")).partitions;
    if (flags.state === "kafka") await ensureChangelog(admin, changelog, shardCount);
  } catch (error) {
    await admin.disconnect().catch(() => {});
    throw new CliError(error instanceof ChangelogLayoutError ? error.message : kafkaErrorLine(error, brokers));
  }
  log.info("topic {topic} has {count} partitions: {count} shards, consumer group {group}, state {state}", {
    topic: topic,
    count: shardCount,
    group: flags.group,
    state: flags.state === "kafka" ? `in ${changelog}` : "in memory only (lost with the node)",
  });
  const storage: ShardStorage = flags.state === "kafka"
    ? new KafkaShardStorage({ kafka, brokers, clientId: nodeClientId(self.address), topic: changelog })
    : MEMORY_STORAGE;

  const parts = new Parts();
  parts.add(() => admin.disconnect());
  try {
    const node = ClusterNode.start({
      self,
      bindHost: host,
      bindPort: remotingPort,
      seeds,
      management: `${flags["mgmt-host"]}:${mgmtPort}`,
      clusterName: flags["cluster-name"],
      secret: flags["cluster-secret"],
      timings,
    });
    parts.add(() => node.close());
    const sharding = new Sharding({
      node,
      typeName: flags.group,
      shardCount,
      askTimeoutMs,
      placement: () => groupPlacement(admin, flags.group, topic),
      shardOf: (userId) => partitionFor(userId, shardCount),
      storage,
    });
    parts.add(() => sharding.close());
    const pipeline = new ConsumerPipeline({
      kafka,
      topic: topic,
      group: flags.group,
      partitions: shardCount,
      sink: sharding.region,
      onAssignment: () => sharding.assignmentChanged(),
      partitionCount: () => partitionCount(admin, topic),
      hostedShards: () => sharding.region.hostedCount,
    });
    const management = startManagement(flags["mgmt-host"], mgmtPort, {
      snapshot: () => node.snapshot(),
      isReady: () => sharding.isReady(),
      notReadyReason: () => sharding.notReadyReason(),
      routes: [
        sharding.managementRoute(() => pipeline.assigned),
        sharding.userRoute(),
        (path) =>
          path === "/stats" ? json({ ...pipeline.stats, hostedShards: sharding.region.hostedCount }) : undefined,
      ],
    });
    parts.add(() => management.shutdown());
    const grpcServer = await startGrpcServer({
      host: flags["grpc-host"],
      port: grpcPort,
      source: {
        userTotals: (userId, timeoutMs) => sharding.region.userTotals(userId, timeoutMs),
        shardOf: (userId) => partitionFor(userId, shardCount),
      },
      serving: () => sharding.isReady(),
      askTimeoutMs,
    });
    parts.add(() => grpcServer.forceShutdown());

    const signalled = Promise.withResolvers<"signal">();
    parts.add(onStopSignal(() => signalled.resolve("signal"), () => {
      log.warn("second signal: exiting without finishing the leave");
      Deno.exit(130);
    }));

    const ended = Promise.race([
      signalled.promise,
      node.removed.then((reason) => ({ removed: reason })),
      sharding.fatal.then((message) => ({ fatal: message })),
      pipeline.fatal.then((message) => ({ fatal: message })),
    ]);
    const ready = await Promise.race([until(() => sharding.isReady()), ended]);
    let consuming = false;
    if (ready === true) {
      log.info("node ready: consuming {topic} in group {group}", { topic: topic, group: flags.group });
      await pipeline.start().catch((error) => {
        throw new CliError(`could not start consuming ${topic}: ${kafkaErrorLine(error, brokers)}`);
      });
      consuming = true;
    }
    const outcome = ready === true ? await ended : ready;
    if (outcome === "signal") {
      if (consuming) {
        log.info("leaving the cluster: stopping the Kafka consumer, then handing shards off");
        await pipeline.stop();
      } else {
        log.info("stopping before this node was ready ({reason})", { reason: sharding.notReadyReason() });
      }
      node.startLeaving();
      await sharding.handOff(HANDOFF_TIMEOUT_MS);
      const reason = await node.exit();
      log.info("left the cluster ({reason}); stopping", { reason });
      return 0;
    }
    if (consuming) await pipeline.stop().catch(() => {});
    if ("fatal" in outcome) throw new CliError(outcome.fatal);
    return outcome.removed === "left" ? 0 : 1;
  } catch (error) {
    if (error instanceof BindError || error instanceof GrpcBindError) throw new CliError(error.message);
    throw error;
  } finally {
    await parts.closeAll();
  }
});

/** Things to close on the way out, last opened first. */
class Parts {
  readonly #closers: (() => unknown)[] = [];

  add(close: () => unknown): void {
    this.#closers.push(close);
  }

  async closeAll(): Promise<void> {
    for (const close of this.#closers.reverse()) {
      try {
        await close();
      } catch {
        // Closing what is already broken must not hide why we are exiting.
      }
    }
  }
}

/** Resolves `true` once `condition()` holds (checked every 100 ms). */
function until(condition: () => boolean): Promise<true> {
  return new Promise((resolve) => {
    const check = () => condition() ? resolve(true) : setTimeout(check, 100);
    check();
  });
}
