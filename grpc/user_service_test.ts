import assert from "node:assert/strict";
import { ShardUnavailableError } from "../cluster/sharding/region.ts";
import { UserService } from "../proto/gen/users_pb.ts";
import { GrpcClient } from "./client.ts";
import { GrpcError, Status } from "./status.ts";
import { type GrpcUserSource, startGrpcServer } from "./user_service.ts";

/**
 * A UserService whose shards answer users "7" (hosted here) and "8" (on
 * another node), and never answer "9"; `answered` holds what the observer heard.
 */
async function withService(run: (client: GrpcClient, answered: string[]) => Promise<void>): Promise<void> {
  const source: GrpcUserSource = {
    shardOf: (userId) => Number(userId),
    hosts: (shard) => shard === 7,
    userTotals: (userId, timeoutMs) =>
      userId === "9"
        ? new Promise((_, reject) => setTimeout(() => reject(new ShardUnavailableError("it is moving")), timeoutMs))
        : Promise.resolve({ totalPurchases: 2, amountSpent: Number(userId) * 100 }),
  };
  const answered: string[] = [];
  const server = await startGrpcServer({
    host: "127.0.0.1",
    port: 0,
    source,
    serving: () => true,
    askTimeoutMs: 300,
    observer: { answered: (code, where) => answered.push(`${code} ${where}`) },
  });
  const client = new GrpcClient("127.0.0.1", server.addr.port);
  try {
    await run(client, answered);
  } finally {
    client.close();
    await server.close();
  }
}

const stats = UserService.method.userStats;

/** The status a call ends with, and its message. */
async function failure(call: Promise<unknown>): Promise<[number, string]> {
  const error = await call.then(() => undefined, (e) => e);
  assert.ok(error instanceof GrpcError, `a gRPC error, not ${error}`);
  return [error.code, error.message];
}

Deno.test("UserStats answers a user's totals, here or forwarded, and the metrics hear where", () =>
  withService(async (client, answered) => {
    const here = await client.unary(stats, { id: "7" }, 5000);
    assert.deepEqual([here.id, here.totalPurchases, here.amountSpent], ["7", 2n, 700n]);
    const forwarded = await client.unary(stats, { id: "8" }, 5000);
    assert.equal(forwarded.amountSpent, 800n);
    assert.deepEqual(answered, ["OK local", "OK forwarded"]);
  }));

Deno.test("each way a query fails has its status: a bad id, a shard past --ask-timeout, the client's own deadline", () =>
  withService(async (client, answered) => {
    assert.deepEqual((await failure(client.unary(stats, { id: " " }, 5000)))[0], Status.INVALID_ARGUMENT);
    const [unavailable, why] = await failure(client.unary(stats, { id: "9" }, 5000));
    assert.equal(unavailable, Status.UNAVAILABLE);
    assert.match(why, /^shard 9 of user 9 could not be reached within 300 ms: it is moving$/);
    // The server gives up 200 ms before the client's deadline to say why; on a loaded machine the client's own
    // timer may still win, with the same status (user_query_test.ts checks the server's message).
    assert.equal((await failure(client.unary(stats, { id: "9" }, 250)))[0], Status.DEADLINE_EXCEEDED);
    assert.deepEqual(answered.slice(0, 2), ["INVALID_ARGUMENT local", "UNAVAILABLE forwarded"]);
  }));
