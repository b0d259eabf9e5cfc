/**
 * `bin/deno task demo`: the walkthrough of the Akka sample this project
 * follows ("Aligning Kafka Partitions with Akka Cluster Sharding"), run step
 * by step. Each step prints a headline and the figures that prove it, read
 * from the nodes themselves: their management endpoints, their logs and the
 * `usershard` CLI. The nodes' and the producer's logs go to files in a folder
 * printed first. Ctrl-C stops the producer and lets both nodes leave the
 * cluster; `--exit` does the same after the last step.
 *
 * @module
 */
import { CliError, defineCommand, StdoutClosed, writeStdout } from "../commands/command.ts";
import { BROKERS_FLAG, GROUP_FLAG, PARTITIONS_FLAG, TOPIC_FLAG, topicFlag } from "../commands/common_flags.ts";
import { type CommandSpec, hostPortList, intFlag, numberFlag, UsageError } from "../commands/flags.ts";
import type { ShardsJson } from "../commands/management_client.ts";
import { compactRanges } from "../cluster/management/shard_ranges.ts";
import { ensureTopic } from "../kafka/admin.ts";
import { createAdmin, kafkaErrorLine } from "../kafka/client.ts";
import { partitionFor } from "../kafka/partitioner.ts";
import { sleep } from "../cluster/sleep.ts";

/** Flags of the demo. */
export const demoSpec = {
  name: "demo",
  summary: "the walkthrough: Kafka, node 1, a producer, node 2, the shards following the partitions, queries",
  usage: "bin/deno task demo [--exit] [--ports BASE] [--rate N] [--topic NAME] [--group NAME]",
  flags: {
    exit: { type: "boolean", description: "stop everything and exit after the last step instead of at Ctrl-C" },
    ports: {
      type: "string",
      value: "BASE",
      env: "USERSHARD_DEMO_PORTS",
      description: "six ports from BASE: remoting BASE and BASE+1, management BASE+2 and BASE+3, gRPC BASE+4 " +
        "and BASE+5 (default: the walkthrough's 2551/2552, 8551/8552, 8081/8082); best below the ephemeral " +
        "range (32768 on Linux), which outgoing connections may take from meanwhile",
    },
    rate: { type: "string", value: "N", default: "10", description: "the producer's events per second" },
    brokers: BROKERS_FLAG,
    topic: TOPIC_FLAG,
    group: GROUP_FLAG,
    partitions: PARTITIONS_FLAG,
  },
  details: `Logs go to a new folder under $TMPDIR (or /tmp), printed first. The nodes and the producer log
at info level, as text, whatever USERSHARD_LOG_LEVEL and USERSHARD_LOG_FORMAT say, since the
demo reads its figures from their lines. Kafka stays up afterwards (bin/deno task kafka:stop).

Exit status: 0 when every step held and everything stopped cleanly, 1 when a step failed (one
line on standard error says which and where its log is), 130 after a second Ctrl-C.`,
} as const satisfies CommandSpec;

const ROOT = new URL("..", import.meta.url).pathname;
const MAIN = `${ROOT}main.ts`;
const KAFKA_SCRIPT = `${ROOT}scripts/kafka.sh`;

// How long each wait may take. Fetching Kafka's jars the first time and a broker that loads many partitions
// are slow; the rest happens in seconds here and gets ten times that.
const KAFKA_START_MS = 300_000;
const TOPIC_READY_MS = 60_000;
const NODE_READY_MS = 60_000;
const PRODUCER_START_MS = 30_000;
// At least; a slow --rate gets time for four times the events awaited.
const EVENTS_MS = 60_000;
const SHARDS_FOLLOW_MS = 60_000;
const CLI_MS = 30_000;
// A node leaving hands its shards off first (default --handoff-timeout 10 s), then leaves the cluster.
const STOP_MS = 60_000;
const POLL_MS = 200;

// Enough events that a share of 100 % says something, few enough to come within seconds at the default rate.
const EVENTS_TO_SEE = 10;
// The sample's users, 0-99: in the seconds the walkthrough takes, a good part of them have bought something.
const USERS = 100;
// The users asked on both nodes in step 6. Few, over one connection per node each, since a node's gRPC
// server under Deno 2.9.6 may abort when a connection that carried many calls closes.
const QUERIED_USERS = Array.from({ length: 30 }, (_, i) => String(i));
const USERS_SHOWN_PER_NODE = 3;
// A user may buy something between the two nodes' answers; such users are asked again, this many times.
const QUERY_ROUNDS = 5;
// A node takes a second stop signal a second or more after the first as "exit at once" (commands/signals.ts).
const FORCE_AFTER_MS = 1000;

/** The ports of one node. */
interface NodePorts {
  readonly remoting: number;
  readonly mgmt: number;
  readonly grpc: number;
}

interface DemoOptions {
  readonly exit: boolean;
  readonly nodes: readonly [NodePorts, NodePorts];
  readonly rate: number;
  readonly brokers: readonly string[];
  readonly topic: string;
  readonly group: string;
  readonly partitions: number;
}

function nodePorts(base: number | undefined): [NodePorts, NodePorts] {
  if (base === undefined) {
    return [{ remoting: 2551, mgmt: 8551, grpc: 8081 }, { remoting: 2552, mgmt: 8552, grpc: 8082 }];
  }
  return [0, 1].map((i) => ({ remoting: base + i, mgmt: base + 2 + i, grpc: base + 4 + i })) as [NodePorts, NodePorts];
}

/** A step that did not hold: printed as one line on standard error, exit status 1. */
class DemoFailure extends Error {
  override name = "DemoFailure";
}

/** Ctrl-C (or SIGTERM, SIGHUP): the walkthrough stops where it is, and everything is stopped. */
class Interrupted extends Error {
  override name = "Interrupted";
}

/** `GET /stats` of a node. */
interface StatsJson {
  readonly events: number;
  readonly local: number;
  readonly malformed: number;
  readonly hostedShards: number;
}

/** What `usershard shards --all --json` prints. */
interface PlacementJson {
  readonly complete: boolean;
  readonly nodes: readonly { node: string; management: string; shards?: ShardsJson; error?: string }[];
}

/** One answer of `usershard query --json`. */
interface UserJson {
  readonly id: string;
  readonly totalPurchases: number;
  readonly amountSpent: number;
}

/**
 * A `usershard` child process. Its output goes to a log file as it comes
 * and its recent lines are kept, numbered, so that a step can look for a
 * line written after a moment it marked.
 */
class Child {
  static readonly #KEPT_LINES = 20_000;
  readonly name: string;
  readonly logPath: string;
  readonly startedAt = Date.now();
  readonly #process: Deno.ChildProcess;
  readonly #lines: string[] = [];
  #dropped = 0;
  #status: Deno.CommandStatus | undefined;
  #signalled = false;
  /** Settles once the process has exited and its output is in the log file. */
  readonly done: Promise<Deno.CommandStatus>;

  constructor(name: string, args: readonly string[], logPath: string, log: Deno.FsFile) {
    this.name = name;
    this.logPath = logPath;
    this.#process = usershard(args).spawn();
    const writer = log.writable.getWriter();
    const pumps = Promise.all([this.#pump(this.#process.stdout, writer), this.#pump(this.#process.stderr, writer)])
      .finally(() => writer.close());
    this.done = Promise.all([this.#process.status, pumps]).then(([status]) => (this.#status = status));
  }

  async #pump(stream: ReadableStream<Uint8Array>, writer: WritableStreamDefaultWriter<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of stream) {
      await writer.write(chunk);
      pending += decoder.decode(chunk, { stream: true });
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) this.#keep(line);
    }
    if (pending !== "") this.#keep(pending);
  }

  #keep(line: string): void {
    this.#lines.push(line);
    if (this.#lines.length > Child.#KEPT_LINES) {
      this.#lines.shift();
      this.#dropped++;
    }
  }

  /** The number of lines so far: lines from now on are {@linkcode since} this mark. */
  mark(): number {
    return this.#dropped + this.#lines.length;
  }

  /** The lines after `mark` that match `pattern`, log messages without their time stamp and level. */
  since(mark: number, pattern: RegExp): string[] {
    return this.#lines.slice(Math.max(0, mark - this.#dropped)).filter((l) => pattern.test(l)).map(logMessage);
  }

  /** Its exit status once it has exited. */
  get status(): Deno.CommandStatus | undefined {
    return this.#status;
  }

  /** Whether the demo has asked it to stop. */
  get signalled(): boolean {
    return this.#signalled;
  }

  /** Its last line, for a message that says why it stopped. */
  lastLine(): string {
    const last = this.#lines.findLast((l) => l.trim() !== "");
    return last === undefined ? "(no output)" : logMessage(last);
  }

  /** Asks it to stop (once): a node leaves the cluster, the producer waits for Kafka's acknowledgements. */
  terminate(): void {
    if (this.#signalled) return;
    this.#signalled = true;
    this.kill("SIGTERM");
  }

  /** Sends `signal` unless it has exited. */
  kill(signal: Deno.Signal): void {
    if (this.#status) return;
    try {
      this.#process.kill(signal);
    } catch (error) {
      // It exited between the check and the signal.
      if (!(error instanceof TypeError)) throw error;
    }
  }

  /** Stops it; kills it if it has not exited within `timeoutMs`. */
  async stop(timeoutMs: number): Promise<{ status: Deno.CommandStatus; ms: number; killed: boolean }> {
    const from = Date.now();
    this.terminate();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((resolve) => timer = setTimeout(() => resolve("late"), timeoutMs));
    const first = await Promise.race([this.done, late]);
    clearTimeout(timer);
    if (first === "late") this.kill("SIGKILL");
    return { status: await this.done, ms: Date.now() - from, killed: first === "late" };
  }
}

/** The command line of `usershard` with `args`, as a user runs it. */
function usershard(args: readonly string[], signal?: AbortSignal): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", MAIN, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal,
    // The figures come from the info lines, as text.
    env: { NO_COLOR: "1", USERSHARD_LOG_LEVEL: "info", USERSHARD_LOG_FORMAT: "text" },
  });
}

/** A log line's message: `2026-01-01T00:00:00.000Z INFO  coordinator: rebalance …` → `rebalance …`. */
function logMessage(line: string): string {
  return line.replace(/^\d{4}-\d\d-\d\dT\S+\s+[A-Z]+\s+(?:[\w.-]+: )?/, "");
}

/** `[1,2,3,7]` in a log line → `[1-3,7]`. */
function compactBrackets(text: string): string {
  return text.replace(
    /\[([\d,]*)\]/g,
    (_, ids: string) => `[${compactRanges(ids.split(",").filter(Boolean).map(Number))}]`,
  );
}

/** A bound, in whole seconds. */
function limit(ms: number): string {
  return `${Math.round(ms / 1000)} s`;
}

/** A measured time. */
function seconds(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function percent(part: number, whole: number): string {
  return `${whole === 0 ? 100 : Math.floor((1000 * part) / whole) / 10} %`;
}

function idsOf(shards: ShardsJson): number[] {
  return shards.regions.map((r) => Number(r.shardId)).sort((a, b) => a - b);
}

/**
 * Why the shards are not (yet) where their partitions are consumed, or
 * `undefined` once every node hosts exactly the shards of the partitions it
 * consumes, every shard is hosted once, and every node has some.
 */
function placementProblem(views: readonly ShardsJson[], partitions: number): string | undefined {
  const described = views.map((v, i) =>
    `node ${i + 1} hosts ${v.regions.length} shards and consumes ${v.consumedPartitions?.length ?? 0} partitions`
  ).join("; ");
  const hosted = views.map(idsOf);
  const everyShardOnce = hosted.flat().length === partitions && new Set(hosted.flat()).size === partitions;
  const aligned = views.every((v, i) => {
    const consumed = [...(v.consumedPartitions ?? [])].sort((a, b) => a - b);
    return consumed.length > 0 && consumed.join() === hosted[i].join();
  });
  return everyShardOnce && aligned ? undefined : described;
}

class Demo {
  readonly #o: DemoOptions;
  readonly #logs: string;
  readonly #children: Child[] = [];
  readonly #interrupt = new AbortController();
  // Without idle connections kept open, a node shutting down its management server waits for none of ours.
  readonly #http = Deno.createHttpClient({ poolMaxIdlePerHost: 0 });
  #firstSignalAt: number | undefined;
  #forced = false;
  #quiet = false;
  #partitions = 0;
  #node1: Child | undefined;
  #producer: Child | undefined;
  /** Shard → the node (1 or 2) that hosts it, once they have settled. */
  #homes = new Map<number, number>();

  constructor(options: DemoOptions, logs: string) {
    this.#o = options;
    this.#logs = logs;
  }

  /** Runs the walkthrough (and, without `--exit`, waits for Ctrl-C), then stops everything; the exit status. */
  async run(): Promise<number> {
    const signals: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];
    for (const signal of signals) Deno.addSignalListener(signal, this.#onSignal);
    let code = 0;
    try {
      await this.#say(`usershard demo: logs go to ${this.#logs} (kafka.log, node1.log, node2.log, producer.log)`);
      await this.#walkthrough();
      if (!this.#o.exit) await this.#untilInterrupted();
    } catch (error) {
      if (error instanceof DemoFailure) {
        console.error(`usershard demo: ${error.message}`);
        code = 1;
      } else if (!(error instanceof Interrupted)) {
        code = 1;
        throw error;
      }
    } finally {
      // Whatever happened, nothing the demo started outlives it.
      if (!await this.#stopAll(code !== 0) && code === 0) code = 1;
      this.#http.close();
      for (const signal of signals) Deno.removeSignalListener(signal, this.#onSignal);
    }
    return this.#forced ? 130 : code;
  }

  readonly #onSignal = (): void => {
    const now = Date.now();
    if (this.#firstSignalAt === undefined) {
      this.#firstSignalAt = now;
      // At once rather than after the current step unwinds: a Ctrl-C in a terminal reaches the children as
      // well, and a node takes a second signal more than a second after the first as "exit at once".
      for (const child of this.#children) child.terminate();
      this.#interrupt.abort();
    } else if (now - this.#firstSignalAt >= FORCE_AFTER_MS && !this.#forced) {
      this.#forced = true;
      console.error("usershard demo: stop signal again: killing the producer and the nodes");
      for (const child of this.#children) child.kill("SIGKILL");
    }
  };

  async #walkthrough(): Promise<void> {
    await this.#kafka();
    await this.#nodeOne();
    await this.#produce();
    const settled = await this.#nodeTwo();
    await this.#colocated(settled);
    await this.#sameTotals();
    const [one, two] = this.#o.nodes;
    await this.#say("7. The live page and the metrics");
    await this.#figure(`live page: http://127.0.0.1:${one.mgmt}/`);
    await this.#figure(`metrics:   http://127.0.0.1:${one.mgmt}/metrics and http://127.0.0.1:${two.mgmt}/metrics`);
  }

  // 1. Kafka up, the topic ready.
  async #kafka(): Promise<void> {
    const { topic, brokers } = this.#o;
    await this.#say(`1. Kafka is up and the topic ${topic} is ready`);
    const output = await this.#command(
      new Deno.Command("bash", {
        args: [KAFKA_SCRIPT, "start"],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        env: { KAFKA_BROKERS: brokers.join(",") },
        signal: this.#deadline(KAFKA_START_MS),
      }),
      () => `Kafka did not answer at ${brokers[0]} within ${limit(KAFKA_START_MS)}; see ${this.#logs}/kafka.log`,
      `${this.#logs}/kafka.log`,
    );
    const said = new TextDecoder().decode(output.stderr);
    const last = said.trim().split("\n").at(-1)?.replace(/^kafka: (error: )?/, "") ?? "";
    if (!output.success) throw new DemoFailure(`Kafka did not start: ${last}; see ${this.#logs}/kafka.log`);
    await this.#figure(`broker: ${last}`);

    const admin = createAdmin({ brokers, clientId: "usershard-demo" });
    let info;
    try {
      info = await this.#within(
        ensureTopic(admin, topic, this.#o.partitions, { requested: false }),
        TOPIC_READY_MS,
        () => `the topic ${topic} was not ready within ${limit(TOPIC_READY_MS)}`,
      );
    } catch (error) {
      if (error instanceof DemoFailure || error instanceof Interrupted) throw error;
      throw new DemoFailure(`could not make the topic ${topic} ready: ${kafkaErrorLine(error, brokers)}`);
    } finally {
      await admin.close();
    }
    this.#partitions = info.partitions;
    const how = info.created
      ? "created now"
      : info.partitions === this.#o.partitions
      ? "it existed already"
      : `it existed already with ${info.partitions}, not ${this.#o.partitions}: the walkthrough uses its count`;
    await this.#figure(`topic ${topic}: ${info.partitions} partitions, so ${info.partitions} shards (${how})`);
  }

  // 2. Node 1 alone takes every shard.
  async #nodeOne(): Promise<void> {
    const [one] = this.#o.nodes;
    const all = this.#partitions;
    await this.#say(`2. Node 1 starts and takes all ${all} shards`);
    const node = this.#node1 = await this.#startNode(1);
    await this.#until(
      () => this.#ready(one),
      NODE_READY_MS,
      () => `node 1 was not ready within ${limit(NODE_READY_MS)}; see ${node.logPath}`,
    );
    await this.#figure(`node 1 (127.0.0.1:${one.remoting}) formed the cluster and is ready after ${this.#age(node)}`);
    const url = `http://127.0.0.1:${one.mgmt}/cluster/shards/${this.#o.group}`;
    let seen: ShardsJson | undefined;
    const shards = await this.#until(
      async () => {
        seen = await this.#json<ShardsJson>(url);
        return seen && seen.regions.length === all ? seen : undefined;
      },
      NODE_READY_MS,
      () =>
        `node 1 did not take all ${all} shards within ${limit(NODE_READY_MS)} (${url}: ${
          seen ? `${seen.regions.length} shards` : "no answer"
        }); see ${node.logPath}`,
    );
    await this.#figure(
      `GET ${url}: ${shards.regions.length} shards hosted (${compactRanges(idsOf(shards))}), ` +
        `${shards.consumedPartitions?.length ?? 0} partitions consumed`,
    );
  }

  // 3. The producer starts; node 1 processes its events, all locally.
  async #produce(): Promise<void> {
    const [one] = this.#o.nodes;
    await this.#say(`3. The producer starts (${this.#o.rate} events/s); node 1 processes every event locally`);
    const producer = this.#producer = await this.#start("producer", [
      "produce",
      ...["--brokers", this.#o.brokers.join(","), "--topic", this.#o.topic, "--partitions", String(this.#partitions)],
      ...["--rate", String(this.#o.rate), "--users", String(USERS)],
    ]);
    const [started] = await this.#until(
      () => {
        const lines = producer.since(0, /producing to /);
        return lines.length > 0 ? lines : undefined;
      },
      PRODUCER_START_MS,
      () => `the producer did not start within ${limit(PRODUCER_START_MS)}; see ${producer.logPath}`,
    );
    await this.#figure(`producer: ${started}`);
    const url = `http://127.0.0.1:${one.mgmt}/stats`;
    let seen: StatsJson | undefined;
    const stats = await this.#until(
      async () => {
        seen = await this.#json<StatsJson>(url);
        return seen && seen.events >= EVENTS_TO_SEE ? seen : undefined;
      },
      this.#eventsMs(),
      () =>
        `node 1 processed ${seen?.events ?? 0} events within ${limit(this.#eventsMs())}, not ${EVENTS_TO_SEE}; see ` +
        `${producer.logPath} and ${this.#node1!.logPath}`,
    );
    await this.#figure(
      `GET ${url}: ${stats.events} events processed, ${stats.local} of them on node 1 ` +
        `(${percent(stats.local, stats.events)})`,
    );
    if (stats.local !== stats.events) {
      throw new DemoFailure(`node 1 alone processed only ${stats.local} of ${stats.events} events locally`);
    }
  }

  // 4. Node 2 joins: Kafka hands it half the partitions, and the coordinator moves their shards to it.
  async #nodeTwo(): Promise<readonly [ShardsJson, ShardsJson]> {
    const [one, two] = this.#o.nodes;
    await this.#say("4. Node 2 joins; Kafka reassigns partitions and the shards follow");
    const node1 = this.#node1!;
    const from = node1.mark();
    const node = await this.#startNode(2);
    await this.#until(
      () => this.#ready(two),
      NODE_READY_MS,
      () => `node 2 did not join within ${limit(NODE_READY_MS)}; see ${node.logPath}`,
    );
    const through = node.since(0, /joining the cluster through seed /).at(-1)?.replace(/^joining the cluster /, "");
    await this.#figure(
      `node 2 (127.0.0.1:${two.remoting}) joined${through ? ` ${through}` : ""} and is ready after ${this.#age(node)}`,
    );
    let problem = "no rebalance logged yet";
    const settled = await this.#until(
      async () => {
        if (node1.since(from, /rebalance of \d+ shards completed/).length === 0) return undefined;
        const views = await Promise.all([one, two].map((n) => this.#shards(n)));
        if (views[0] === undefined || views[1] === undefined) return undefined;
        problem = placementProblem(views as ShardsJson[], this.#partitions) ?? "";
        return problem === "" ? views as [ShardsJson, ShardsJson] : undefined;
      },
      SHARDS_FOLLOW_MS,
      () =>
        `the shards did not follow the partitions within ${limit(SHARDS_FOLLOW_MS)} (${problem}); see ` +
        `${node1.logPath} and ${node.logPath}`,
    );
    const followed = this.#age(node);
    for (const line of node1.since(from, /partitions \[[\d,]*\] revoked from this node/)) {
      await this.#figure(`node 1's consumer: ${compactBrackets(line)}`);
    }
    for (const line of node.since(0, /partitions \[[\d,]*\] assigned to this node/)) {
      await this.#figure(`node 2's consumer: ${compactBrackets(line.replace(/; updating shard allocation$/, ""))}`);
    }
    for (const line of node1.since(from, /rebalance (started for|of) \d+ shards/)) {
      await this.#figure(`node 1's coordinator: ${compactBrackets(line)}`);
    }
    await this.#figure(`from node 2's start to every shard beside its partition's consumer: ${followed}`);
    settled.forEach((view, i) => idsOf(view).forEach((shard) => this.#homes.set(shard, i + 1)));
    return settled;
  }

  // 5. Half and half, co-located, and every event since processed where it was consumed.
  async #colocated(settled: readonly [ShardsJson, ShardsJson]): Promise<void> {
    const { nodes, group } = this.#o;
    const [a, b] = settled.map((s) => s.regions.length);
    await this.#say(`5. ${a} and ${b} shards, all co-located: every event is processed locally`);
    const before = await Promise.all(nodes.map((n) => this.#stats(n)));
    const output = await this.#cli([
      "shards",
      "--all",
      "--json",
      "--node",
      `127.0.0.1:${nodes[0].mgmt}`,
      "--type",
      group,
    ]);
    const placement = JSON.parse(output) as PlacementJson;
    for (const entry of placement.nodes) {
      const which = nodes.findIndex((n) => entry.node === `127.0.0.1:${n.remoting}`) + 1;
      const shards = entry.shards ?? { regions: [] };
      const consumed = new Set(shards.consumedPartitions ?? []);
      const colocated = idsOf(shards).filter((id) => consumed.has(id)).length;
      const entities = shards.regions.reduce((sum, r) => sum + r.numEntities, 0);
      await this.#figure(
        `usershard shards --all --json: node ${which} (${entry.node}) hosts ${shards.regions.length} shards ` +
          `[${compactRanges(idsOf(shards))}] with ${entities} users, ${colocated}/${shards.regions.length} co-located`,
      );
    }
    for (const [i, view] of settled.entries()) {
      await this.#figure(
        `GET http://127.0.0.1:${nodes[i].mgmt}/cluster/shards/${group}: node ${i + 1} consumes partitions ` +
          `${compactRanges([...(view.consumedPartitions ?? [])])} and hosts shards ${compactRanges(idsOf(view))}`,
      );
    }
    let now: StatsJson[] = before;
    await this.#until(
      async () => {
        now = await Promise.all(nodes.map((n) => this.#stats(n)));
        return now.every((s, i) => s.events - before[i].events >= EVENTS_TO_SEE) || undefined;
      },
      this.#eventsMs(),
      () =>
        `the nodes processed ${now.map((s, i) => s.events - before[i].events).join(" and ")} events within ` +
        `${limit(this.#eventsMs())} of the shards settling, not ${EVENTS_TO_SEE} each; see ${this.#producer!.logPath}`,
    );
    const since = now.map((s, i) => ({ events: s.events - before[i].events, local: s.local - before[i].local }));
    await this.#figure(
      `GET /stats since the shards settled: ` +
        since.map((s, i) => `node ${i + 1} ${s.local} of ${s.events} events locally (${percent(s.local, s.events)})`)
          .join(", "),
    );
    const moving = now.some((s) => s.local !== s.events) ? " (the others reached their shard's old home mid-move)" : "";
    await this.#figure(
      `GET /stats since each node started: ` +
        now.map((s, i) => `node ${i + 1} ${s.local} of ${s.events} locally`).join(", ") + moving,
    );
    const remote = since.findIndex((s) => s.local !== s.events);
    if (remote >= 0) {
      throw new DemoFailure(
        `node ${remote + 1} processed ${since[remote].events - since[remote].local} events elsewhere after the ` +
          `shards settled; see ${this.#logs}`,
      );
    }
  }

  // 6. Any node answers for any user, with the one live copy's totals.
  async #sameTotals(): Promise<void> {
    const { nodes } = this.#o;
    await this.#say("6. The same users queried on both nodes give the same totals");
    const answers: Map<string, UserJson>[] = [new Map(), new Map()];
    let pending = [...QUERIED_USERS];
    for (let round = 1; pending.length > 0; round++) {
      if (round > QUERY_ROUNDS) {
        throw new DemoFailure(
          `users ${pending.join(", ")} still had different totals on the two nodes after ${QUERY_ROUNDS} rounds ` +
            `of queries: ${
              pending.map((id) => `${id}: ${describe(answers[0].get(id))} / ${describe(answers[1].get(id))}`).join("; ")
            }`,
        );
      }
      const replies = await Promise.all(
        nodes.map((n) => this.#cli(["query", "--json", "--grpc", `127.0.0.1:${n.grpc}`, ...pending])),
      );
      replies.forEach((text, i) => {
        for (const line of text.trim().split("\n")) {
          const user = JSON.parse(line) as UserJson;
          answers[i].set(user.id, user);
        }
      });
      pending = pending.filter((id) => describe(answers[0].get(id)) !== describe(answers[1].get(id)));
    }
    const [one, two] = nodes;
    await this.#figure(
      `usershard query --json 0 … ${QUERIED_USERS.length - 1}, on --grpc 127.0.0.1:${one.grpc} and on ` +
        `127.0.0.1:${two.grpc}: ${QUERIED_USERS.length} of ${QUERIED_USERS.length} users answer alike; a few:`,
    );
    const columns = (user: string, shard: string, home: string, first: string, second: string) =>
      `${user.padStart(4)}  ${shard.padStart(5)}  ${home.padEnd(6)}  ${first.padEnd(26)}  ${second}`;
    await this.#figure(columns("user", "shard", "home", `node 1 (gRPC ${one.grpc})`, `node 2 (gRPC ${two.grpc})`));
    for (const id of this.#shownUsers(answers[0])) {
      const shard = partitionFor(id, this.#partitions);
      const [first, second] = answers.map((a) => describe(a.get(id)));
      await this.#figure(columns(id, String(shard), `node ${this.#homes.get(shard)}`, first, second));
    }
  }

  /** A few users of each node, those who bought something first, so that both local and forwarded answers show. */
  #shownUsers(answers: ReadonlyMap<string, UserJson>): string[] {
    const bought = (id: string) => (answers.get(id)?.totalPurchases ?? 0) > 0;
    const ordered = [...QUERIED_USERS.filter(bought), ...QUERIED_USERS.filter((id) => !bought(id))];
    const shown = [1, 2].flatMap((node) =>
      ordered.filter((id) => this.#homes.get(partitionFor(id, this.#partitions)) === node)
        .slice(0, USERS_SHOWN_PER_NODE)
    );
    return shown.sort((a, b) => Number(a) - Number(b));
  }

  async #untilInterrupted(): Promise<void> {
    const [one, two] = this.#o.nodes;
    const grpc = one.grpc === 8081 ? "" : ` --grpc ${one.grpc}`;
    const mgmt = one.mgmt === 8551 ? "" : ` --node ${one.mgmt}`;
    const type = this.#o.group === "user-processing" ? "" : ` --type ${this.#o.group}`;
    await this.#say("Running until Ctrl-C, the producer too. In another terminal try:");
    await this.#figure(`bin/deno task usershard query 7${grpc}`);
    await this.#figure(`bin/deno task usershard shards --all${mgmt}${type}`);
    await this.#figure(`curl -s localhost:${two.mgmt}/cluster/shards/${this.#o.group} | jq`);
    await this.#figure(`tail -f ${this.#logs}/node1.log`);
    // Nothing to wait for but a stop signal, or a child that exits on its own.
    await this.#until(() => undefined, Infinity, () => "");
  }

  /** Stops every child at once and reports how each ended; whether all stopped cleanly. */
  async #stopAll(failed: boolean): Promise<boolean> {
    if (this.#children.length === 0) return true;
    const why = failed ? "a step failed" : this.#firstSignalAt !== undefined ? "stop signal" : "--exit";
    await this.#say(`Stopping (${why}): the producer and the nodes; the nodes leave the cluster gracefully`);
    // Reported in the order of the walkthrough's end: the producer, then the nodes.
    const children = [...this.#children].sort((a, b) => Number(b === this.#producer) - Number(a === this.#producer));
    const exitedBefore = new Set(children.filter((child) => child.status));
    const results = await Promise.all(children.map((child) => child.stop(STOP_MS)));
    let clean = true;
    for (const [i, child] of children.entries()) {
      const { status, ms, killed } = results[i];
      // Dead of the demo's SIGTERM: it had not set up its own handling yet, so had nothing to hand off.
      const tooEarly = !exitedBefore.has(child) && !killed && status.signal === "SIGTERM";
      const ok = status.success || tooEarly;
      clean &&= ok;
      const code = tooEarly
        ? "ended by SIGTERM while starting"
        : status.signal
        ? `ended by ${status.signal}`
        : `exit ${status.code}`;
      const how = exitedBefore.has(child)
        ? `had exited (${code})`
        : killed
        ? `did not stop within ${limit(STOP_MS)} and was killed`
        : `${code} after ${seconds(ms)}`;
      const detail = child === this.#producer
        ? child.since(0, /sent \d+ events to /).at(-1)
        : child.since(0, /left the cluster \(/).length > 0
        ? "left the cluster"
        : undefined;
      await this.#figure(`${child.name}: ${how}${detail ? `; ${detail}` : ""}`);
      if (!ok) await this.#figure(`  last line: ${child.lastLine()} (${child.logPath})`);
    }
    const ports = this.#o.nodes.flatMap((n) => [n.remoting, n.mgmt, n.grpc]).sort((a, b) => a - b);
    const busy = ports.filter((port) => !portFree(port));
    await this.#figure(
      busy.length === 0
        ? `ports ${ports.join(", ")} are free again`
        : `${busy.length === 1 ? "port" : "ports"} ${busy.join(", ")} still in use (by another program?)`,
    );
    await this.#figure(
      `logs: ${this.#logs}; Kafka stays up at ${this.#o.brokers[0]} (bin/deno task kafka:stop stops it)`,
    );
    return clean && busy.length === 0;
  }

  async #startNode(n: 1 | 2): Promise<Child> {
    const { remoting, mgmt, grpc } = this.#o.nodes[n - 1];
    const seeds = this.#o.nodes.map((p) => `127.0.0.1:${p.remoting}`).join(",");
    return await this.#start(`node ${n}`, [
      "process",
      ...["--remoting", String(remoting), "--mgmt", String(mgmt), "--grpc", String(grpc), "--seeds", seeds],
      ...["--brokers", this.#o.brokers.join(","), "--topic", this.#o.topic, "--group", this.#o.group],
      ...["--partitions", String(this.#partitions)],
    ]);
  }

  async #start(name: string, args: readonly string[]): Promise<Child> {
    const path = `${this.#logs}/${name.replace(" ", "")}.log`;
    const log = await Deno.open(path, { write: true, create: true, append: true });
    const child = new Child(name, args, path, log);
    this.#children.push(child);
    return child;
  }

  /** Runs a one-shot `usershard` command; its standard output, or a failure with its error line. */
  async #cli(args: readonly string[]): Promise<string> {
    const output = await this.#command(
      usershard(args, this.#deadline(CLI_MS)),
      () => `usershard ${args.join(" ")} gave no answer within ${limit(CLI_MS)}`,
    );
    if (!output.success) {
      const said = new TextDecoder().decode(output.stderr).trim().split("\n").at(-1);
      throw new DemoFailure(`usershard ${args.join(" ")} failed: ${said}`);
    }
    return new TextDecoder().decode(output.stdout);
  }

  /**
   * Runs `command` (made with {@linkcode #deadline}'s signal), keeping its
   * output in `log` if given; `late` says what to report if it ran too long.
   */
  async #command(command: Deno.Command, late: () => string, log?: string): Promise<Deno.CommandOutput> {
    const output = await command.output();
    if (log) await Deno.writeFile(log, new Uint8Array([...output.stderr, ...output.stdout]));
    this.#check();
    if (output.signal === "SIGTERM" && !output.success) throw new DemoFailure(late());
    return output;
  }

  /** A signal that aborts (and so kills a command given it) after `ms` or at a stop signal. */
  #deadline(ms: number): AbortSignal {
    return AbortSignal.any([AbortSignal.timeout(ms), this.#interrupt.signal]);
  }

  /**
   * Polls `check` until it gives a value; fails with `failure()` after
   * `timeoutMs`, at once when a child exits unasked, and on a stop signal.
   */
  async #until<T>(
    check: () => T | undefined | Promise<T | undefined>,
    timeoutMs: number,
    failure: () => string,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      this.#check();
      const value = await check();
      this.#check();
      if (value !== undefined) return value;
      if (Date.now() >= deadline) throw new DemoFailure(failure());
      await this.#pause(POLL_MS);
    }
  }

  /** `promise`, or a failure after `timeoutMs`, or {@linkcode Interrupted}. */
  async #within<T>(promise: Promise<T>, timeoutMs: number, failure: () => string): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let interrupted = () => {};
    const over = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new DemoFailure(failure())), timeoutMs);
      interrupted = () => reject(new Interrupted());
      this.#interrupt.signal.addEventListener("abort", interrupted, { once: true });
    });
    try {
      return await Promise.race([promise, over]);
    } finally {
      clearTimeout(timer);
      this.#interrupt.signal.removeEventListener("abort", interrupted);
    }
  }

  #check(): void {
    if (this.#interrupt.signal.aborted) throw new Interrupted();
    for (const child of this.#children) {
      const status = child.status;
      if (status && !child.signalled) {
        throw new DemoFailure(
          `${child.name} exited (${status.signal ?? `code ${status.code}`}): ${child.lastLine()}; see ${child.logPath}`,
        );
      }
    }
  }

  #pause(ms: number): Promise<void> {
    return sleep(ms, this.#interrupt.signal);
  }

  async #ready(node: NodePorts): Promise<true | undefined> {
    try {
      const response = await fetch(`http://127.0.0.1:${node.mgmt}/ready`, {
        client: this.#http,
        signal: AbortSignal.timeout(2000),
      });
      await response.body?.cancel();
      return response.ok || undefined;
    } catch {
      return undefined; // not listening yet
    }
  }

  async #json<T>(url: string): Promise<T | undefined> {
    try {
      const response = await fetch(url, { client: this.#http, signal: AbortSignal.timeout(2000) });
      if (response.ok) return await response.json() as T;
      await response.body?.cancel();
    } catch {
      // Not listening yet, or busy: the caller polls again.
    }
    return undefined;
  }

  #shards(node: NodePorts): Promise<ShardsJson | undefined> {
    return this.#json<ShardsJson>(`http://127.0.0.1:${node.mgmt}/cluster/shards/${this.#o.group}`);
  }

  async #stats(node: NodePorts): Promise<StatsJson> {
    return await this.#until(
      () => this.#json<StatsJson>(`http://127.0.0.1:${node.mgmt}/stats`),
      10_000,
      () => `GET http://127.0.0.1:${node.mgmt}/stats did not answer within 10 s`,
    );
  }

  /** How long to wait for {@linkcode EVENTS_TO_SEE} events on a node. */
  #eventsMs(): number {
    return Math.max(EVENTS_MS, (4000 * EVENTS_TO_SEE) / this.#o.rate);
  }

  #age(child: Child): string {
    return seconds(Date.now() - child.startedAt);
  }

  async #say(line: string): Promise<void> {
    if (this.#quiet) return;
    try {
      await writeStdout(`${line}\n`);
    } catch (error) {
      // Nobody reads any more (piped into head): the demo goes on, quietly.
      if (!(error instanceof StdoutClosed)) throw error;
      this.#quiet = true;
    }
  }

  #figure(line: string): Promise<void> {
    return this.#say(`   ${line}`);
  }
}

function describe(user: UserJson | undefined): string {
  if (!user) return "no answer";
  return `${user.totalPurchases} ${user.totalPurchases === 1 ? "purchase" : "purchases"}, ${user.amountSpent}p`;
}

/** Whether a listener could bind `port` on loopback now. */
/** Whether nothing listens on `port` of 127.0.0.1 now. */
export function portFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) return false;
    throw error;
  }
}

/** The demo as a command: flags parsed and checked, `--help`, exit status. */
export const demoCommand = defineCommand(demoSpec, async (flags, positionals) => {
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  const base = flags.ports === undefined ? undefined : intFlag("ports", flags.ports, { min: 1, max: 65530 });
  const options: DemoOptions = {
    exit: flags.exit,
    nodes: nodePorts(base),
    rate: numberFlag("rate", flags.rate),
    brokers: hostPortList("brokers", flags.brokers),
    topic: topicFlag(flags.topic),
    group: flags.group,
    partitions: intFlag("partitions", flags.partitions, { min: 2, max: 10_000 }),
  };
  if (options.rate === 0) throw new UsageError("--rate must be above 0: the demo's producer runs at a modest rate");
  const logs = await Deno.makeTempDir({ prefix: "usershard-demo-" }).catch((error) => {
    throw new CliError(`cannot create a folder for the logs: ${error}`);
  });
  return await new Demo(options, logs).run();
});

if (import.meta.main) {
  let code: number;
  try {
    code = await demoCommand.execute(Deno.args);
  } catch (error) {
    // As main.ts does for a subcommand, but pointing at this program's own help.
    if (!(error instanceof UsageError || error instanceof CliError)) throw error;
    const hint = error instanceof UsageError ? " (see bin/deno task demo --help)" : "";
    console.error(`usershard demo: ${error.message}${hint}`);
    code = error instanceof UsageError ? 2 : 1;
  }
  Deno.exit(code);
}
