/**
 * `usershard process`: one processor node. Joins the cluster through the seed
 * nodes, serves management HTTP, and leaves gracefully on SIGINT/SIGTERM.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { ClusterNode } from "../cluster/cluster_node.ts";
import { DEFAULT_TIMINGS } from "../cluster/config.ts";
import { startManagement } from "../cluster/management.ts";
import { newUid } from "../cluster/members.ts";
import { BindError } from "../cluster/remoting.ts";
import { CliError, defineCommand } from "./command.ts";
import { type CommandSpec, durationFlag, hostPortList, portFlag, UsageError } from "./flags.ts";
import { logLevelFlag, setUpLogging } from "./logging.ts";

/** Flags of `usershard process`. */
export const processSpec = {
  name: "process",
  summary: "runs one processor node of the cluster",
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
      description: "shared secret every node must prove it knows (default: none)",
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
    "log-level": {
      type: "string",
      value: "LEVEL",
      env: "USERSHARD_LOG_LEVEL",
      default: "info",
      description: "trace, debug, info, warning or error",
    },
  },
  details: `SIGINT or SIGTERM leaves the cluster gracefully (Leaving, Exiting, Removed) and
exits 0; a second signal exits at once.

Example, the two seed nodes of the walkthrough:
  usershard process --remoting 2551 --mgmt 8551 --grpc 8081
  usershard process --remoting 2552 --mgmt 8552 --grpc 8082`,
} as const satisfies CommandSpec;

/** `usershard process`. */
export const processCommand = defineCommand(processSpec, async (flags, positionals) => {
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  const remotingPort = portFlag("remoting", flags.remoting);
  const mgmtPort = portFlag("mgmt", flags.mgmt);
  portFlag("grpc", flags.grpc);
  const seeds = hostPortList("seeds", flags.seeds);
  const host = flags.host.trim();
  if (host === "" || /[\s/:]/.test(host)) {
    throw new UsageError(`--host must be a host name or IPv4 address, got '${host}'`);
  }
  if (remotingPort === mgmtPort) throw new UsageError(`--remoting and --mgmt must differ, both are ${mgmtPort}`);
  const timings = {
    ...DEFAULT_TIMINGS,
    unreachableAfterMs: durationFlag("unreachable-after", flags["unreachable-after"]),
    downAfterMs: durationFlag("down-after", flags["down-after"]),
  };
  await setUpLogging(logLevelFlag(flags["log-level"]));
  const log = getLogger(["usershard", "process"]);

  const self = { address: `${host}:${remotingPort}`, uid: newUid() };
  let node: ClusterNode;
  let management: Deno.HttpServer;
  try {
    node = ClusterNode.start({
      self,
      bindHost: host,
      bindPort: remotingPort,
      seeds,
      clusterName: flags["cluster-name"],
      secret: flags["cluster-secret"],
      timings,
    });
  } catch (error) {
    if (error instanceof BindError) throw new CliError(error.message);
    throw error;
  }
  try {
    management = startManagement(flags["mgmt-host"], mgmtPort, {
      snapshot: () => node.snapshot(),
      isReady: () => node.isUp,
      notReadyReason: () => `this node is ${node.selfMember?.status ?? "not in a cluster yet"}`,
    });
  } catch (error) {
    node.close();
    if (error instanceof BindError) throw new CliError(error.message);
    throw error;
  }

  const leaving = Promise.withResolvers<void>();
  const onSignal = () => {
    if (leavingStarted) {
      log.warn("second signal: exiting without finishing the leave");
      Deno.exit(130);
    }
    leavingStarted = true;
    leaving.resolve();
  };
  let leavingStarted = false;
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);

  const outcome = await Promise.race([
    leaving.promise.then(() => "leave" as const),
    node.removed.then((reason) => reason),
  ]);
  let code = 0;
  if (outcome === "leave") {
    log.info("leaving the cluster");
    node.startLeaving();
    const reason = await node.exit();
    log.info("left the cluster ({reason}); stopping", { reason });
  } else if (outcome === "downed" || outcome === "replaced") {
    code = 1;
  }
  Deno.removeSignalListener("SIGINT", onSignal);
  Deno.removeSignalListener("SIGTERM", onSignal);
  await management.shutdown();
  node.close();
  return code;
});
