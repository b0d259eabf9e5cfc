/**
 * `usershard process`: one processor node. Parses and checks the flags, then
 * runs a `ProcessorNode` (node/processor_node.ts) until a signal asks it to
 * leave the cluster gracefully.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import {
  DEFAULT_NODE_TIMINGS,
  DEFAULT_SHARDING_TIMINGS,
  type NodeTimings,
  timingProblems,
  writeTimeoutFor,
} from "../cluster/timings.ts";
import { newUid } from "../cluster/remoting/node.ts";
import { type ProcessorConfig, ProcessorError, ProcessorNode } from "../node/processor_node.ts";
import { CliError, defineCommand } from "./command.ts";
import {
  BROKERS_FLAG,
  GROUP_FLAG,
  KAFKA_SECURITY_FLAGS,
  kafkaSecurityFlags,
  LOG_FORMAT_FLAG,
  LOG_LEVEL_FLAG,
  PARTITIONS_FLAG,
  REPLICATION_FACTOR_FLAG,
  replicationFactorFlag,
  TOPIC_FLAG,
  topicFlag,
} from "./common_flags.ts";
import { onStopSignal } from "./signals.ts";
import {
  type CommandSpec,
  durationFlag,
  fileFlag,
  type FlagValues,
  hostPortList,
  intFlag,
  portFlag,
  UsageError,
} from "./flags.ts";
import { logFormatFlag, logLevelFlag, setUpLogging } from "./logging.ts";

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
    "grpc-tls-cert": {
      type: "string",
      value: "FILE",
      env: "USERSHARD_GRPC_TLS_CERT",
      description: "serve gRPC over TLS with this PEM certificate chain (with --grpc-tls-key)",
    },
    "grpc-tls-key": {
      type: "string",
      value: "FILE",
      env: "USERSHARD_GRPC_TLS_KEY",
      description: "the PEM key of --grpc-tls-cert",
    },
    "grpc-tls-client-ca": {
      type: "string",
      value: "FILE",
      env: "USERSHARD_GRPC_TLS_CLIENT_CA",
      description:
        "with --grpc-tls-cert, let in only gRPC clients with a certificate signed by a CA in FILE (mutual TLS)",
    },
    "mgmt-tls-cert": {
      type: "string",
      value: "FILE",
      env: "USERSHARD_MGMT_TLS_CERT",
      description: "serve management over HTTPS with this PEM certificate chain (with --mgmt-tls-key)",
    },
    "mgmt-tls-key": {
      type: "string",
      value: "FILE",
      env: "USERSHARD_MGMT_TLS_KEY",
      description: "the PEM key of --mgmt-tls-cert",
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
    ...KAFKA_SECURITY_FLAGS,
    topic: TOPIC_FLAG,
    group: GROUP_FLAG,
    partitions: PARTITIONS_FLAG,
    "replication-factor": REPLICATION_FACTOR_FLAG,
    "ask-timeout": {
      type: "string",
      value: "DURATION",
      env: "USERSHARD_ASK_TIMEOUT",
      default: `${DEFAULT_SHARDING_TIMINGS.askTimeoutMs / 1000}s`,
      description: "how long an event or query may wait for its shard (while it moves, say)",
    },
    "unreachable-after": {
      type: "string",
      value: "DURATION",
      env: "USERSHARD_UNREACHABLE_AFTER",
      default: `${DEFAULT_NODE_TIMINGS.membership.unreachableAfterMs / 1000}s`,
      description: "a member silent this long is marked unreachable",
    },
    "down-after": {
      type: "string",
      value: "DURATION",
      env: "USERSHARD_DOWN_AFTER",
      default: `${DEFAULT_NODE_TIMINGS.membership.downAfterMs / 1000}s`,
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
    "handoff-timeout": {
      type: "string",
      value: "DURATION",
      env: "USERSHARD_HANDOFF_TIMEOUT",
      default: `${DEFAULT_SHARDING_TIMINGS.handoffTimeoutMs / 1000}s`,
      description: "how long a leaving node waits for its shards to be handed off before it leaves anyway",
    },
    "log-level": LOG_LEVEL_FLAG,
    "log-format": LOG_FORMAT_FLAG,
  },
  details: `SIGINT or SIGTERM leaves the cluster gracefully (consumer stopped, shards handed off,
Leaving, Exiting, Removed) and exits 0; another signal a second or more later exits at once.

Example, the two seed nodes of the walkthrough:
  usershard process --remoting 2551 --mgmt 8551 --grpc 8081
  usershard process --remoting 2552 --mgmt 8552 --grpc 8082`,
} as const satisfies CommandSpec;

/** `usershard process`. */
export const processCommand = defineCommand(processSpec, async (flags, positionals, sources) => {
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  const config = processorConfig(flags, sources.partitions !== "default");
  await setUpLogging(logLevelFlag(flags["log-level"]), logFormatFlag(flags["log-format"]));
  const log = getLogger(["usershard", "process"]);
  let node: ProcessorNode;
  try {
    // Until it is up, a signal ends the process at once (the default): there is nothing to hand off.
    node = await ProcessorNode.start(config);
  } catch (error) {
    throw error instanceof ProcessorError ? new CliError(error.message) : error;
  }
  const stop = Promise.withResolvers<void>();
  const stopListening = onStopSignal(() => stop.resolve(), () => {
    log.warn("second signal: exiting without finishing the leave");
    Deno.exit(130);
  });
  try {
    return await node.run(stop.promise);
  } catch (error) {
    throw error instanceof ProcessorError ? new CliError(error.message) : error;
  } finally {
    stopListening();
  }
});

/** The flags of `usershard process`, checked, as a node's configuration. */
function processorConfig(flags: FlagValues<typeof processSpec.flags>, partitionsRequired: boolean): ProcessorConfig {
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
  if (flags.state !== "kafka" && flags.state !== "memory") {
    throw new UsageError(`--state must be kafka or memory, got '${flags.state}'`);
  }
  const secret = flags["cluster-secret"];
  if (secret === "") {
    // An unset variable in `USERSHARD_CLUSTER_SECRET=$SECRET` must not quietly turn authentication off.
    throw new UsageError("--cluster-secret is empty; give the shared secret, or leave the flag out for none");
  }
  const askTimeoutMs = durationFlag("ask-timeout", flags["ask-timeout"]);
  const timings: NodeTimings = {
    ...DEFAULT_NODE_TIMINGS,
    membership: {
      ...DEFAULT_NODE_TIMINGS.membership,
      unreachableAfterMs: durationFlag("unreachable-after", flags["unreachable-after"]),
      downAfterMs: durationFlag("down-after", flags["down-after"]),
    },
    sharding: {
      ...DEFAULT_NODE_TIMINGS.sharding,
      askTimeoutMs,
      handoffTimeoutMs: durationFlag("handoff-timeout", flags["handoff-timeout"]),
    },
    kafka: {
      ...DEFAULT_NODE_TIMINGS.kafka,
      changelogWriteTimeoutMs: writeTimeoutFor(askTimeoutMs),
    },
  };
  const problems = timingProblems(timings);
  if (problems.length > 0) throw new UsageError(problems.join("; "));
  return {
    self: { address: `${host}:${remotingPort}`, uid: newUid() },
    host,
    remotingPort,
    mgmtHost: flags["mgmt-host"],
    mgmtPort,
    grpcHost: flags["grpc-host"],
    grpcPort,
    grpcTls: grpcTls(flags["grpc-tls-cert"], flags["grpc-tls-key"], flags["grpc-tls-client-ca"]),
    mgmtTls: pemPair("mgmt-tls", flags["mgmt-tls-cert"], flags["mgmt-tls-key"]),
    seeds,
    clusterName: flags["cluster-name"],
    secret,
    brokers,
    security: kafkaSecurityFlags(flags),
    topic,
    group: flags.group,
    partitions,
    partitionsRequired,
    replicationFactor: replicationFactorFlag(flags["replication-factor"]),
    state: flags.state,
    timings,
  };
}

/** The PEM certificate and key that `--PREFIX-cert` and `--PREFIX-key` name, both or neither. */
function pemPair(prefix: string, cert: string | undefined, key: string | undefined) {
  if (cert === undefined && key === undefined) return undefined;
  if (cert === undefined || key === undefined) {
    throw new UsageError(`--${prefix}-cert and --${prefix}-key go together`);
  }
  return { cert: fileFlag(`${prefix}-cert`, cert), key: fileFlag(`${prefix}-key`, key) };
}

/** The gRPC port's TLS: a certificate and key, and the CA of the clients' certificates for mutual TLS. */
function grpcTls(cert: string | undefined, key: string | undefined, clientCa: string | undefined) {
  const pair = pemPair("grpc-tls", cert, key);
  if (clientCa === undefined) return pair;
  if (pair === undefined) throw new UsageError("--grpc-tls-client-ca needs --grpc-tls-cert and --grpc-tls-key");
  return { ...pair, clientCa: fileFlag("grpc-tls-client-ca", clientCa) };
}
