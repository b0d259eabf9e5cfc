/**
 * What fault tests check: every user's totals, asked of every live node,
 * equal the totals computed from the topic's own records, and a producer that
 * keeps a steady stream going through the faults.
 *
 * The nodes are asked through gRPC, as users ask them, many calls in flight
 * on one connection per node and round.
 *
 * @module
 */
import type { Kafka } from "kafkajs";
import { QueryError, UserStatsClient } from "../../grpc/user_client.ts";
import { partitionCount } from "../../kafka/admin.ts";
import { PurchaseSender } from "../../kafka/producer.ts";
import { decodePurchase, type Purchase } from "../../kafka/purchase.ts";
import { eventually, type NodePorts } from "./cluster.ts";
import { BROKERS, expectedTotals, knownPurchases, readTopic, testAdmin } from "./kafka.ts";

/** A user's totals as a test compares them. */
export type Totals = { totalPurchases: number; amountSpent: number };

/** Every user's totals computed from what the topic holds, whatever the producer meant to send. */
export async function topicTotals(kafka: Kafka, topic: string): Promise<Map<string, Totals>> {
  const purchases: Purchase[] = [];
  for (const record of await readTopic(kafka, topic, 60_000)) {
    const decoded = decodePurchase(record.key, record.value);
    if (!decoded.ok) throw new Error(`record ${record.partition}@${record.offset} is malformed: ${decoded.reason}`);
    purchases.push(decoded.purchase);
  }
  return expectedTotals(purchases);
}

/** Users asked at once, per node. */
const IN_FLIGHT = 20;

/** A user's totals as `client`'s node answers them through gRPC, or what went wrong. */
async function ask(client: UserStatsClient, user: string): Promise<Totals | string> {
  try {
    const { totalPurchases, amountSpent } = await client.userStats(user, 15_000);
    return { totalPurchases, amountSpent };
  } catch (error) {
    if (error instanceof QueryError) return error.message;
    throw error;
  }
}

/** A user's totals as `node` answers them through gRPC (`UserService.UserStats`), or what went wrong. */
export async function askNode(node: NodePorts, user: string): Promise<Totals | string> {
  const client = new UserStatsClient(`127.0.0.1:${node.grpc}`);
  try {
    return await ask(client, user);
  } finally {
    client.close();
  }
}

/** The users whose totals from `node` differ from `expected`, described (at most `limit`). */
async function differencesOn(node: NodePorts, expected: Map<string, Totals>, limit = 5): Promise<string[]> {
  const found: string[] = [];
  const users = [...expected.keys()];
  const client = new UserStatsClient(`127.0.0.1:${node.grpc}`);
  try {
    for (let i = 0; i < users.length && found.length < limit; i += IN_FLIGHT) {
      const batch = users.slice(i, i + IN_FLIGHT);
      const answers = await Promise.all(batch.map((user) => ask(client, user)));
      answers.forEach((got, j) => {
        const want = expected.get(batch[j]);
        if (JSON.stringify(got) !== JSON.stringify(want)) {
          found.push(`user ${batch[j]} on :${node.grpc}: ${JSON.stringify(got)}, topic says ${JSON.stringify(want)}`);
        }
      });
    }
  } finally {
    client.close();
  }
  return found.slice(0, limit);
}

/**
 * Waits until every node in `nodes` answers every user of the topic with
 * exactly the totals of the topic's records (counts and amounts, any
 * difference fails), for at most `timeoutMs`.
 */
export async function exactOnEveryNode(
  kafka: Kafka,
  topic: string,
  nodes: readonly NodePorts[],
  timeoutMs = 90_000,
): Promise<Map<string, Totals>> {
  const expected = await topicTotals(kafka, topic);
  let last: string[] = [];
  await eventually(
    `every node answers the topic's exact totals for ${expected.size} users`,
    async () => {
      last = (await Promise.all(nodes.map((node) => differencesOn(node, expected)))).flat();
      return last.length === 0;
    },
    timeoutMs,
    () => last.join("; "),
  );
  return expected;
}

/**
 * A producer sending purchases by `users` users at about `perSecond` events a
 * second until {@linkcode SteadyStream.stop}, with the program's own sender
 * (idempotent, riding out a broker's loss); a send that fails for good (the
 * broker is down for long) is tried again, so the topic may hold a record
 * twice, which is why tests compare with the topic's records rather than
 * with what was meant.
 */
export class SteadyStream {
  readonly #topic: string;
  readonly #users: number;
  readonly #perSecond: number;
  #stopping = false;
  #sent = 0;
  readonly #done: Promise<void>;

  constructor(topic: string, options: { users: number; perSecond: number; seed?: number }) {
    this.#topic = topic;
    this.#users = options.users;
    this.#perSecond = options.perSecond;
    this.#done = this.#run(options.seed ?? 7);
  }

  /** Events the broker acknowledged so far. */
  get sent(): number {
    return this.#sent;
  }

  async #run(seed: number): Promise<void> {
    const admin = testAdmin();
    const partitions = await partitionCount(admin, this.#topic).finally(() => admin.close());
    if (partitions === undefined) throw new Error(`there is no topic ${this.#topic} to stream to`);
    const producer = new PurchaseSender(
      { brokers: BROKERS, clientId: "usershard-test-stream" },
      this.#topic,
      partitions,
    );
    const tick = 100;
    const perTick = Math.max(1, Math.round((this.#perSecond * tick) / 1000));
    try {
      for (let round = 0; !this.#stopping; round++) {
        // Users in turn, so every one buys; the amounts come from knownPurchases's sequence.
        const purchases = knownPurchases(perTick, this.#users, seed + round).map((p, i) => ({
          ...p,
          userId: String((round * perTick + i) % this.#users),
        }));
        const started = Date.now();
        while (true) {
          try {
            await producer.send(purchases);
            break;
          } catch {
            if (this.#stopping) return;
            await new Promise((resolve) => setTimeout(resolve, 500));
          }
        }
        this.#sent += purchases.length;
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, tick - (Date.now() - started))));
      }
    } finally {
      await producer.close().catch(() => {});
    }
  }

  /** Waits until at least `count` events are out. */
  async reach(count: number, timeoutMs = 120_000): Promise<void> {
    await eventually(`the stream sends ${count} events`, () => Promise.resolve(this.#sent >= count), timeoutMs);
  }

  /** Stops the stream after the send in hand and resolves with the number sent. */
  async stop(): Promise<number> {
    this.#stopping = true;
    await this.#done;
    return this.#sent;
  }
}
