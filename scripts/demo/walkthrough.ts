/**
 * The walkthrough itself: each step prints a headline and the figures that
 * prove it, read from the nodes' management endpoints and the `usershard`
 * CLI, never from their logs; the children it started are stopped at the
 * end, whatever happened.
 *
 * @module
 */
import { StdoutClosed, writeStdout } from "../../commands/command.ts";
import type { ShardsJson } from "../../commands/management_client.ts";
import { compactRanges } from "../../cluster/management/shard_ranges.ts";
import type { CoordinatorView, RebalanceRecord } from "../../cluster/sharding/coordinator_runner.ts";
import { sleep } from "../../cluster/sleep.ts";
import { ensureTopic } from "../../kafka/admin.ts";
import { createAdmin, kafkaErrorLine } from "../../kafka/client.ts";
import { partitionFor } from "../../kafka/partitioner.ts";
import { usershardCommand } from "../usershard_process.ts";
import { Child } from "./child.ts";
import {
  bracketed,
  describeUser,
  idsOf,
  limit,
  percent,
  placementProblem,
  rebalanceStarted,
  seconds,
} from "./format.ts";
import { NodeApi, type NodePorts, type StatsJson } from "./node_api.ts";
import { portFree } from "./ports.ts";

const KAFKA_SCRIPT = new URL("../kafka.sh", import.meta.url).pathname;

// How long each wait may take. Fetching Kafka's jars the first time and a broker that loads many partitions
// are slow; the rest happens in seconds here and gets ten times that.
const KAFKA_START_MS = 300_000;
const TOPIC_READY_MS = 60_000;
const NODE_READY_MS = 60_000;
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
// The users asked on both nodes in step 6: enough for users at home on either node, on one connection each.
const QUERIED_USERS = Array.from({ length: 30 }, (_, i) => String(i));
const USERS_SHOWN_PER_NODE = 3;
// A user may buy something between the two nodes' answers; such users are asked again, this many times.
const QUERY_ROUNDS = 5;
// A node takes a second stop signal a second or more after the first as "exit at once" (commands/signals.ts).
const FORCE_AFTER_MS = 1000;

/** What the walkthrough runs with. */
export interface DemoOptions {
  readonly exit: boolean;
  readonly nodes: readonly [NodePorts, NodePorts];
  readonly rate: number;
  readonly brokers: readonly string[];
  readonly topic: string;
  readonly group: string;
  readonly partitions: number;
}

/** A step that did not hold: printed as one line on standard error, exit status 1. */
class DemoFailure extends Error {
  override name = "DemoFailure";
}

/** Ctrl-C (or SIGTERM, SIGHUP): the walkthrough stops where it is, and everything is stopped. */
class Interrupted extends Error {
  override name = "Interrupted";
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

/** A rebalance's identity across reads of the coordinator's view. */
function rebalanceKey(rebalance: RebalanceRecord): string {
  return `${rebalance.epoch}/${rebalance.rebalance}`;
}

/** The walkthrough, step by step, and the children it started. */
export class Demo {
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
  readonly #nodes: readonly [NodeApi, NodeApi];

  /** The walkthrough with `options`, its logs in the folder `logs`. */
  constructor(options: DemoOptions, logs: string) {
    this.#o = options;
    this.#logs = logs;
    this.#nodes = [new NodeApi(options.nodes[0], this.#http), new NodeApi(options.nodes[1], this.#http)];
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
    const [api] = this.#nodes;
    const all = this.#partitions;
    await this.#say(`2. Node 1 starts and takes all ${all} shards`);
    const node = this.#node1 = await this.#startNode(1);
    await this.#until(
      async () => await api.ready() || undefined,
      NODE_READY_MS,
      () => `node 1 was not ready within ${limit(NODE_READY_MS)}; see ${node.logPath}`,
    );
    await this.#figure(`node 1 (127.0.0.1:${one.remoting}) formed the cluster and is ready after ${this.#age(node)}`);
    const url = api.url(`/cluster/shards/${this.#o.group}`);
    let seen: ShardsJson | undefined;
    const shards = await this.#until(
      async () => {
        seen = await api.shards(this.#o.group);
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
    const [api] = this.#nodes;
    await this.#say(`3. The producer starts (${this.#o.rate} events/s); node 1 processes every event locally`);
    const producer = this.#producer = await this.#start("producer", [
      "produce",
      ...["--brokers", this.#o.brokers.join(","), "--topic", this.#o.topic, "--partitions", String(this.#partitions)],
      ...["--rate", String(this.#o.rate), "--users", String(USERS)],
    ]);
    await this.#figure(
      `producer: ${this.#o.rate} events/s for users 0-${USERS - 1} to ${this.#o.topic}, each keyed by its user ` +
        `(log: ${producer.logPath})`,
    );
    const url = api.url("/stats");
    let seen: StatsJson | undefined;
    const stats = await this.#until(
      async () => {
        seen = await api.stats();
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
    const [api1, api2] = this.#nodes;
    const { group } = this.#o;
    await this.#say("4. Node 2 joins; Kafka reassigns partitions and the shards follow");
    const node1 = this.#node1!;
    // Node 1's coordinator and consumer before: what changes is what node 2's arrival did.
    const earlier = new Set((await this.#coordinatorOf(api1)).rebalances.map(rebalanceKey));
    const consumedBefore = (await this.#until(() => api1.shards(group), 10_000, () => "node 1 stopped answering"))
      .consumedPartitions ?? [];
    const node = await this.#startNode(2);
    await this.#until(
      async () => await api2.ready() || undefined,
      NODE_READY_MS,
      () => `node 2 did not join within ${limit(NODE_READY_MS)}; see ${node.logPath}`,
    );
    await this.#figure(`node 2 (127.0.0.1:${api2.ports.remoting}) joined and is ready after ${this.#age(node)}`);
    let problem = "no rebalance completed yet";
    let rebalances: RebalanceRecord[] = [];
    const settled = await this.#until(
      async () => {
        rebalances = (await this.#coordinatorOf(api1)).rebalances.filter((r) => !earlier.has(rebalanceKey(r)));
        if (!rebalances.some((r) => r.completedMs !== undefined)) return undefined;
        const views = await Promise.all([api1.shards(group), api2.shards(group)]);
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
    const [after1, after2] = settled.map((view) => view.consumedPartitions ?? []);
    const revoked = consumedBefore.filter((p) => !after1.includes(p));
    await this.#figure(
      `node 1's consumer: partitions ${bracketed(revoked)} revoked from this node (${after1.length} left)`,
    );
    await this.#figure(
      `node 2's consumer: partitions ${bracketed(after2)} assigned to this node (${after2.length} in all)`,
    );
    for (const rebalance of rebalances) {
      await this.#figure(`node 1's coordinator: ${rebalanceStarted(rebalance)}`);
      if (rebalance.completedMs !== undefined) {
        await this.#figure(
          `node 1's coordinator: rebalance of ${rebalance.moves.length} shards completed in ${rebalance.completedMs} ms`,
        );
      }
    }
    await this.#figure(`from node 2's start to every shard beside its partition's consumer: ${followed}`);
    settled.forEach((view, i) => idsOf(view).forEach((shard) => this.#homes.set(shard, i + 1)));
    return settled;
  }

  /** What the coordinator on `node` does: it runs there, as the oldest member's. */
  async #coordinatorOf(node: NodeApi): Promise<CoordinatorView> {
    const view = await this.#until(
      () => node.coordinator(),
      10_000,
      () => `GET ${node.url("/cluster/coordinator")} did not answer within 10 s`,
    );
    if ("running" in view) {
      throw new DemoFailure(`the coordinator does not run on node 1 (${node.url("/cluster/coordinator")})`);
    }
    return view;
  }

  // 5. Half and half, co-located, and every event since processed where it was consumed.
  async #colocated(settled: readonly [ShardsJson, ShardsJson]): Promise<void> {
    const { nodes, group } = this.#o;
    const [a, b] = settled.map((s) => s.regions.length);
    await this.#say(`5. ${a} and ${b} shards, all co-located: every event is processed locally`);
    const before = await Promise.all(this.#nodes.map((n) => this.#stats(n)));
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
        now = await Promise.all(this.#nodes.map((n) => this.#stats(n)));
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
              pending.map((id) => `${id}: ${describeUser(answers[0].get(id))} / ${describeUser(answers[1].get(id))}`)
                .join("; ")
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
      pending = pending.filter((id) => describeUser(answers[0].get(id)) !== describeUser(answers[1].get(id)));
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
      const [first, second] = answers.map((a) => describeUser(a.get(id)));
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
      // A node exits 0 after a stop signal only once it has left the cluster.
      const detail = child !== this.#producer && status.success && !killed ? "left the cluster" : undefined;
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
      usershardCommand(args, { signal: this.#deadline(CLI_MS) }),
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

  async #stats(node: NodeApi): Promise<StatsJson> {
    return await this.#until(
      () => node.stats(),
      10_000,
      () => `GET ${node.url("/stats")} did not answer within 10 s`,
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
