/**
 * One processor node, assembled and run in this process: the topic and its
 * changelog checked, membership joined, the shard region and coordinator,
 * the Kafka consumer, management HTTP and the gRPC front end. `usershard
 * process` parses flags into a {@linkcode ProcessorConfig} and runs one of
 * these; tests can start several in one process.
 *
 * A node's life: {@linkcode ProcessorNode.start} binds every port and joins;
 * {@linkcode ProcessorNode.run} starts consuming once the node is ready
 * (Up, and its region registered), and on `stop` leaves gracefully: consumer
 * stopped, shards handed off, Leaving → Exiting → Removed.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { json, startManagement } from "../cluster/management/management.ts";
import { shardingRoutes } from "../cluster/management/sharding_routes.ts";
import { ClusterNode } from "../cluster/membership/cluster_node.ts";
import type { RemovalReason } from "../cluster/membership/membership.ts";
import { BindError, within } from "../cluster/remoting/errors.ts";
import type { NodeId } from "../cluster/remoting/node.ts";
import { Sharding } from "../cluster/sharding/sharding.ts";
import { MEMORY_STORAGE, type ShardStorage } from "../cluster/sharding/shard_storage.ts";
import type { NodeTimings } from "../cluster/timings.ts";
import { GrpcBindError, startGrpcServer } from "../grpc/user_service.ts";
import type { ServerTls } from "../grpc/http2/server.ts";
import { ensureTopic, partitionCount } from "../kafka/admin.ts";
import { groupPlacement, nodeClientId } from "../kafka/assignment.ts";
import {
  ChangelogLayoutError,
  changelogTopicFor,
  ensureChangelog,
  KafkaShardStorage,
  refuseLostChangelog,
} from "../kafka/changelog.ts";
import { kafkaPrincipal } from "../kafka/authorization.ts";
import { createAdmin, kafkaErrorLine, type KafkaSettings } from "../kafka/client.ts";
import { ConsumerPipeline } from "../kafka/consumer.ts";
import type { KafkaSecurity } from "../kafka/security.ts";
import { ConsumerLag } from "../kafka/lag.ts";
import { OffsetsReader } from "../kafka/offsets.ts";
import { MinorityRule } from "./minority.ts";
import { reduceMemoryWhenQuiet } from "./memory_reducer.ts";
import { partitionFor } from "../kafka/partitioner.ts";
import { NodeMetrics } from "./metrics.ts";

const log = getLogger(["usershard", "process"]);

/** Everything a processor node needs to know, already checked. */
export interface ProcessorConfig {
  /** This incarnation: the advertised `host:port` of remoting and a fresh uid. */
  readonly self: NodeId;
  /** Address remoting binds to. */
  readonly host: string;
  readonly remotingPort: number;
  readonly mgmtHost: string;
  readonly mgmtPort: number;
  readonly grpcHost: string;
  readonly grpcPort: number;
  /** gRPC over TLS (mutual when it names a client CA); plaintext when absent. */
  readonly grpcTls?: ServerTls;
  /** Management over HTTPS with this PEM certificate chain and key; HTTP when absent. */
  readonly mgmtTls?: { readonly cert: string; readonly key: string };
  readonly seeds: readonly string[];
  readonly clusterName: string;
  readonly secret?: string;
  readonly brokers: readonly string[];
  /** TLS and SASL to the brokers; absent for PLAINTEXT. */
  readonly security?: KafkaSecurity;
  readonly topic: string;
  readonly group: string;
  /** Partitions to create the topic with when it is missing. */
  readonly partitions: number;
  /** Whether `partitions` was asked for (then an existing topic must have that many). */
  readonly partitionsRequired: boolean;
  /** Replicas of the topics the node creates; the brokers' default when absent. */
  readonly replicationFactor?: number;
  readonly state: "kafka" | "memory";
  readonly timings: NodeTimings;
}

/** How often a consuming node looks at whether it still hears a majority. */
const MINORITY_CHECK_MS = 250;

/** Why a node that was removed without leaving cannot go on. */
const REMOVED_WHY: Record<Exclude<RemovalReason, "left">, string> = {
  downed: "this node was downed by the rest of the cluster (it was unreachable past --down-after: frozen, or " +
    "cut off), and the others took its shards over; it left the Kafka group and exits, to be started again",
  replaced: "a newer incarnation of this node took over its address; this one exits",
  exitTimeout: "the leader did not confirm this node's exit in time; it exits anyway",
  anotherCluster: "this node's cluster met a larger one (or an older one of the same size) through a seed, after " +
    "a partition or restart had split the cluster in two; this node left its own and exits, to be started again " +
    "and join the other",
};

/** A node that cannot start or go on, with one line that says why. */
export class ProcessorError extends Error {
  override name = "ProcessorError";
}

/** A running processor node. */
export class ProcessorNode {
  readonly config: ProcessorConfig;
  readonly cluster: ClusterNode;
  readonly sharding: Sharding;
  readonly pipeline: ConsumerPipeline;
  readonly #closers: (() => unknown)[];

  private constructor(
    config: ProcessorConfig,
    parts: { cluster: ClusterNode; sharding: Sharding; pipeline: ConsumerPipeline; closers: (() => unknown)[] },
  ) {
    this.config = config;
    this.cluster = parts.cluster;
    this.sharding = parts.sharding;
    this.pipeline = parts.pipeline;
    this.#closers = parts.closers;
  }

  /**
   * Checks the topic (and the changelog), binds every port and starts
   * joining. Throws {@linkcode ProcessorError} with one line when Kafka
   * cannot be reached, the layout is wrong, or a port is taken.
   */
  static async start(config: ProcessorConfig): Promise<ProcessorNode> {
    const { self, brokers, topic, group } = config;
    const settings: KafkaSettings = { brokers, clientId: nodeClientId(self.address), security: config.security };
    const admin = createAdmin(settings);
    const changelog = changelogTopicFor(group);
    const offsets = new OffsetsReader(settings);
    const principal = kafkaPrincipal(config.security);
    let shardCount: number;
    try {
      shardCount = (await ensureTopic(admin, topic, config.partitions, {
        requested: config.partitionsRequired,
        replicationFactor: config.replicationFactor,
      })).partitions;
      if (config.state === "kafka") {
        await refuseLostChangelog(offsets, changelog, { topic, group, partitions: shardCount });
        await ensureChangelog(admin, changelog, shardCount, config.replicationFactor);
      }
    } catch (error) {
      await admin.close().catch(() => {});
      await offsets.close().catch(() => {});
      throw new ProcessorError(
        error instanceof ChangelogLayoutError ? error.message : kafkaErrorLine(error, brokers, principal),
      );
    }
    log.info("topic {topic} has {count} partitions: {count} shards, consumer group {group}, state {state}", {
      topic,
      count: shardCount,
      group,
      state: config.state === "kafka" ? `in ${changelog}` : "in memory only (lost with the node)",
    });
    const metrics = new NodeMetrics();
    const storage: ShardStorage = config.state === "kafka"
      ? new KafkaShardStorage({
        offsets,
        input: { topic, group },
        brokers,
        clientId: settings.clientId,
        security: config.security,
        topic: changelog,
        transactionTimeoutMs: config.timings.kafka.transactionTimeoutMs,
        writeTimeoutMs: config.timings.kafka.changelogWriteTimeoutMs,
        observer: metrics,
      })
      : MEMORY_STORAGE;

    const closers: (() => unknown)[] = [() => admin.close(), () => offsets.close(), () => metrics.close()];
    try {
      const cluster = ClusterNode.start({
        self,
        bindHost: config.host,
        bindPort: config.remotingPort,
        seeds: config.seeds,
        management: `${config.mgmtHost}:${config.mgmtPort}`,
        clusterName: config.clusterName,
        secret: config.secret,
        timings: config.timings.membership,
        remotingObserver: metrics,
      });
      closers.push(() => cluster.close());
      const shardOf = (userId: string) => partitionFor(userId, shardCount);
      const sharding = new Sharding({
        node: cluster,
        typeName: group,
        shardCount,
        askTimeoutMs: config.timings.sharding.askTimeoutMs,
        placement: () => groupPlacement(admin, group, topic),
        shardOf,
        storage,
        timings: config.timings.sharding,
        observer: metrics,
      });
      closers.push(() => sharding.close());
      const pipeline = new ConsumerPipeline({
        kafka: settings,
        topic,
        group,
        partitions: shardCount,
        sink: sharding.region,
        onAssignment: () => sharding.assignmentChanged(),
        partitionCount: () => partitionCount(admin, topic),
        hostedShards: () => sharding.region.hostedCount,
        timings: config.timings.kafka,
        observer: metrics,
      });
      const lag = new ConsumerLag({ offsets, group, topic, partitions: () => pipeline.assigned });
      metrics.readFrom({
        members: () => {
          const { members, removed } = cluster.snapshot();
          return [...members, ...removed];
        },
        hostedShards: () => sharding.region.hostedShards(),
        pendingAsks: () => cluster.remoting.pendingAsks,
        consumerLag: () => lag.read(),
      });
      const management = startManagement(config.mgmtHost, config.mgmtPort, config.mgmtTls, {
        snapshot: () => cluster.snapshot(),
        isReady: () => sharding.isReady(),
        notReadyReason: () => sharding.notReadyReason(),
        routes: [
          ...shardingRoutes(sharding, () => pipeline.assigned),
          async (path) =>
            path === "/stats"
              ? json({ ...pipeline.stats, hostedShards: sharding.region.hostedCount, lag: totalLag(await lag.read()) })
              : undefined,
          (path) => path === "/metrics" ? metrics.response() : undefined,
        ],
      });
      closers.push(() => management.shutdown());
      const grpcServer = await startGrpcServer({
        host: config.grpcHost,
        port: config.grpcPort,
        tls: config.grpcTls,
        source: {
          userTotals: (userId, timeoutMs, shard) => sharding.region.userTotals(userId, timeoutMs, shard),
          shardOf,
          hosts: (shard) => sharding.region.hosts(shard),
        },
        serving: () => sharding.isReady(),
        askTimeoutMs: config.timings.sharding.askTimeoutMs,
        observer: metrics,
      });
      closers.push(() => grpcServer.close());
      const reducing = reduceMemoryWhenQuiet(() => pipeline.stats.events, metrics);
      closers.push(() => reducing.stop());
      return new ProcessorNode(config, { cluster, sharding, pipeline, closers });
    } catch (error) {
      await closeAll(closers);
      if (error instanceof BindError || error instanceof GrpcBindError) throw new ProcessorError(error.message);
      throw error;
    }
  }

  /**
   * Runs until `stop` resolves (then leaves gracefully and resolves 0), or the
   * node cannot go on: downed by the rest of the cluster, or refused (throws
   * {@linkcode ProcessorError} with one line, after leaving the Kafka group
   * and closing every part within the shutdown timeout, so that a supervisor
   * can restart it at once). Closes everything on the way out.
   */
  async run(stop: Promise<unknown>): Promise<number> {
    const { cluster, sharding, pipeline, config } = this;
    let consuming = false;
    let outcome: "stop" | { removed: RemovalReason } | { fatal: string };
    try {
      const ended = Promise.race([
        stop.then(() => "stop" as const),
        cluster.removed.then((reason) => ({ removed: reason })),
        sharding.fatal.then((message) => ({ fatal: message })),
        pipeline.fatal.then((message) => ({ fatal: message })),
      ]);
      const ready = await Promise.race([until(() => sharding.isReady(), ended), ended]);
      if (ready === true) {
        log.info("node ready: consuming {topic} in group {group}", { topic: config.topic, group: config.group });
        await pipeline.start().catch(async (error) => {
          // It may have joined the group before failing: leave it, so that its partitions go to others at once.
          await pipeline.stop().catch(() => {});
          throw new ProcessorError(
            `could not start consuming ${config.topic}: ${
              kafkaErrorLine(error, config.brokers, kafkaPrincipal(config.security))
            }`,
          );
        });
        consuming = true;
      }
      const minority = consuming ? this.#watchMinority() : undefined;
      outcome = ready === true ? await ended : ready;
      // A rejoin under way may wait on Kafka: the shutdown bound holds for it too.
      await within(minority?.stop() ?? Promise.resolve(), config.timings.membership.shutdownTimeoutMs, "joining again")
        .catch((error) => log.warn("{error}; stopping anyway", { error: error.message }));
      if (outcome === "stop") {
        if (consuming) {
          log.info("leaving the cluster: stopping the Kafka consumer, then handing shards off");
          await pipeline.stop();
        } else {
          log.info("stopping before this node was ready ({reason})", { reason: sharding.notReadyReason() });
        }
        cluster.startLeaving();
        await sharding.handOff(config.timings.sharding.handoffTimeoutMs);
        const reason = await cluster.exit();
        log.info("left the cluster ({reason}); stopping", { reason });
        await this.close();
        return 0;
      }
    } catch (error) {
      await this.#shutDown(consuming);
      throw error;
    }
    // Downed, replaced or refused: there is nothing to hand off (the others took the shards over, or
    // cannot have them), so the node stops consuming and closes, bounded, and says why in one line.
    await this.#shutDown(consuming);
    if ("fatal" in outcome) throw new ProcessorError(outcome.fatal);
    if (outcome.removed === "left") return 0;
    throw new ProcessorError(REMOVED_WHY[outcome.removed]);
  }

  /**
   * While the node consumes, has it leave the Kafka group when it no longer
   * hears a majority (`minority.ts`), and join again when it has heard one
   * for a while; a rejoin that fails is tried again.
   */
  #watchMinority(): { stop(): Promise<void> } {
    const { cluster, pipeline, config } = this;
    const rule = new MinorityRule();
    let transition = Promise.resolve();
    let busy = false;
    const timer = setInterval(() => {
      // One transition at a time: a rejoin still waiting on Kafka is not asked for again.
      if (!cluster.isUp || busy) return;
      const action = rule.step(cluster.hearsMajority, performance.now());
      if (!action) return;
      const { heard, of } = cluster.heard();
      busy = true;
      transition = transition.then(async () => {
        if (action === "leave") {
          log.warn(
            "on the minority side of a cut: this node hears {heard} of {of} members; it stops consuming and " +
              "leaves Kafka group {group}, so that the others take its partitions",
            { heard, of, group: config.group },
          );
          await pipeline.stop().catch((error) => log.warn("leaving the group failed: {error}", { error }));
        } else {
          log.info("hears a majority again ({heard} of {of} members): consuming again", { heard, of });
          await pipeline.start().catch(async (error) => {
            log.error("could not join Kafka group {group} again, retrying: {error}", { group: config.group, error });
            await pipeline.stop().catch(() => {});
            rule.rejoinFailed();
          });
        }
      }).finally(() => (busy = false));
    }, MINORITY_CHECK_MS);
    return {
      stop: async () => {
        clearInterval(timer);
        await transition;
      },
    };
  }

  /**
   * Leaves the Kafka group and closes every part within the shutdown
   * timeout; past it the node exits anyway (its ports close with the
   * process, and Kafka gives its partitions away after the session timeout).
   */
  async #shutDown(consuming: boolean): Promise<void> {
    const limitMs = this.config.timings.membership.shutdownTimeoutMs;
    const done = (async () => {
      if (consuming) await this.pipeline.stop().catch(() => {});
      await this.close();
    })();
    await within(done, limitMs, "closing").catch(() =>
      log.warn("closing did not finish within {seconds} s; exiting anyway", { seconds: limitMs / 1000 })
    );
  }

  /** Closes every part, last started first; closing twice is harmless. */
  async close(): Promise<void> {
    await closeAll(this.#closers);
  }
}

async function closeAll(closers: (() => unknown)[]): Promise<void> {
  for (const close of closers.splice(0).reverse()) {
    try {
      await close();
    } catch {
      // Closing what is already broken must not hide why we are exiting.
    }
  }
}

/** The lag of all this node's partitions, `null` when unknown (Kafka did not say in time, or it consumes none). */
function totalLag(lag: ReadonlyMap<number, number> | undefined): number | null {
  if (!lag || lag.size === 0) return null;
  let total = 0;
  for (const records of lag.values()) total += records;
  return total;
}

/** Resolves `true` once `condition()` holds (checked every 100 ms); stops checking once `ended` settles. */
function until(condition: () => boolean, ended: Promise<unknown>): Promise<true> {
  let over = false;
  ended.finally(() => over = true);
  return new Promise((resolve) => {
    const check = () => {
      if (condition()) resolve(true);
      else if (!over) setTimeout(check, 100);
    };
    check();
  });
}
