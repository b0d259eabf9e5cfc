import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { create, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import {
  Health,
  HealthCheckRequestSchema,
  type HealthCheckResponse,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../proto/gen/grpc/health/v1/health_pb.ts";
import {
  ServerReflection,
  type ServerReflectionRequest,
  ServerReflectionRequestSchema,
  type ServerReflectionResponse,
} from "../proto/gen/grpc/reflection/v1/reflection_pb.ts";
import { serviceDefinition } from "../grpc/definitions.ts";
import { QueryError, UserStatsClient } from "../grpc/user_client.ts";
import { PROMPT } from "../commands/query.ts";
import { runUsershard } from "./support/cli.ts";
import {
  addressOf,
  eventually,
  type NodePorts,
  nodePorts,
  shardsOf,
  startProcessor,
  type Stream,
  withNodes,
} from "./support/cluster.ts";
import { createTopic, expectedTotals, knownPurchases, producePurchases, testKafka } from "./support/kafka.ts";
import { freePort } from "./support/process.ts";

type Totals = Map<string, { totalPurchases: number; amountSpent: number }>;

/** Asks `node` for every user with `usershard query --json`, as a user would. */
async function queryAll(node: NodePorts, users: readonly string[]): Promise<Totals> {
  const result = await runUsershard(["query", "--grpc", `127.0.0.1:${node.grpc}`, "--json", ...users]);
  assert.equal(result.code, 0, result.stderr);
  return new Map(
    result.stdout.trim().split("\n").map((line) => {
      const answer = JSON.parse(line) as { id: string; totalPurchases: number; amountSpent: number };
      return [answer.id, { totalPurchases: answer.totalPurchases, amountSpent: answer.amountSpent }];
    }),
  );
}

function sameTotals(actual: Totals, expected: Totals): boolean {
  return [...expected].every(([user, t]) => JSON.stringify(actual.get(user)) === JSON.stringify(t));
}

async function allCoLocated(nodes: readonly NodePorts[], stream: Stream, shards: number): Promise<void> {
  await eventually("every shard on its partition's consumer", async () => {
    const views = await Promise.all(nodes.map((n) => shardsOf(n, stream.group)));
    if (views.some((v) => !v || v.consumed.length === 0)) return false;
    return views.flatMap((v) => v!.shards).length === shards &&
      views.every((v) => JSON.stringify(v!.shards) === JSON.stringify(v!.consumed));
  }, 60_000);
}

Deno.test("every node answers every user's totals, with two and then three nodes", async () => {
  await withNodes("query", async (started, stream) => {
    const kafka = testKafka();
    await createTopic(kafka, stream.topic, 16);
    const purchases = knownPurchases(800, 40, 11);
    await producePurchases(kafka, stream.topic, purchases);
    const expected = expectedTotals(purchases);
    const users = [...expected.keys()];
    const [a, b, c] = nodePorts(3);
    started.push(startProcessor(a, [a, b], stream), startProcessor(b, [a, b], stream));
    await allCoLocated([a, b], stream, 16);
    for (const node of [a, b]) {
      await eventually(`node ${addressOf(node)} answers every user right`, async () => {
        return sameTotals(await queryAll(node, users), expected);
      }, 60_000);
    }

    started.push(startProcessor(c, [a, b], stream));
    await allCoLocated([a, b, c], stream, 16);
    for (const node of [a, b, c]) assert.ok(sameTotals(await queryAll(node, users), expected), `node ${node.grpc}`);
    // A client made from users.proto alone (as the sample's is), not from this project's code.
    const definition = protoLoader.loadSync(new URL("../proto/users.proto", import.meta.url).pathname, {
      longs: String,
    });
    const { UserService } = grpc.loadPackageDefinition(definition) as unknown as {
      UserService: new (target: string, credentials: grpc.ChannelCredentials) => grpc.Client & {
        UserStats(request: { id: string }, callback: (error: Error | null, response?: unknown) => void): void;
      };
    };
    const foreign = new UserService(`127.0.0.1:${b.grpc}`, grpc.credentials.createInsecure());
    const seven = await new Promise((resolve, reject) =>
      foreign.UserStats({ id: "7" }, (error, response) => error ? reject(error) : resolve(response))
    );
    foreign.close();
    assert.deepEqual(seven, {
      id: "7",
      totalPurchases: String(expected.get("7")!.totalPurchases),
      amountSpent: String(expected.get("7")!.amountSpent),
    });

    const never = await queryAll(a, ["no-such-user"]);
    assert.deepEqual(never.get("no-such-user"), { totalPurchases: 0, amountSpent: 0 });
    const shards = await Promise.all([a, b, c].map((n) => shardsOf(n, stream.group)));
    assert.equal(
      shards.reduce((n, v) => n + v!.entities, 0),
      users.length,
      "asking for a user who never bought leaves no entity behind",
    );
  });
});

Deno.test("queries stay right while shards move: no zeros, no errors", async () => {
  await withNodes("query", async (started, stream) => {
    const kafka = testKafka();
    await createTopic(kafka, stream.topic, 16);
    const purchases = knownPurchases(600, 32, 12);
    await producePurchases(kafka, stream.topic, purchases);
    const expected = expectedTotals(purchases);
    const users = [...expected.keys()];
    const [a, b, c] = nodePorts(3);
    const nodeA = startProcessor(a, [a, b], stream);
    const nodeB = startProcessor(b, [a, b], stream);
    started.push(nodeA, nodeB);
    await allCoLocated([a, b], stream, 16);
    await eventually("all events processed", async () => sameTotals(await queryAll(a, users), expected), 60_000);

    const client = new UserStatsClient(`127.0.0.1:${a.grpc}`);
    const wrong: string[] = [];
    let answered = 0;
    let running = true;
    const loop = (async () => {
      while (running) {
        await Promise.all(users.map(async (user) => {
          try {
            const stats = await client.userStats(user, 15_000);
            answered++;
            const want = expected.get(user)!;
            if (stats.totalPurchases !== want.totalPurchases || stats.amountSpent !== want.amountSpent) {
              wrong.push(`user ${user}: ${JSON.stringify(stats)} != ${JSON.stringify(want)}`);
            }
          } catch (error) {
            wrong.push(`user ${user}: ${error instanceof Error ? error.message : error}`);
          }
        }));
      }
    })();
    try {
      started.push(startProcessor(c, [a, b], stream));
      await allCoLocated([a, b, c], stream, 16);
      nodeB.kill("SIGTERM");
      assert.equal((await nodeB.exited(30_000)).code, 0);
      await allCoLocated([a, c], stream, 16);
    } finally {
      running = false;
      await loop;
      client.close();
    }
    assert.deepEqual(wrong.slice(0, 5), []);
    assert.ok(answered > users.length * 3, `only ${answered} answers`);
  });
});

Deno.test("the interactive loop reads ids from stdin, reports bad ones and goes on until :q", async () => {
  await withNodes("query", async (started, stream) => {
    const kafka = testKafka();
    await createTopic(kafka, stream.topic, 4);
    const purchases = [
      { userId: "7", product: "skis", quantity: 2, price: 1548 },
      { userId: "3", product: "rope", quantity: 1, price: 12060 },
    ];
    await producePurchases(kafka, stream.topic, purchases);
    const [a] = nodePorts(1);
    started.push(startProcessor(a, [a], stream));
    await eventually("user 3 processed", async () => {
      const result = await runUsershard(["query", "--grpc", `127.0.0.1:${a.grpc}`, "3"]);
      return result.code === 0 && result.stdout.includes("has made 1 purchase");
    }, 60_000);

    const session = await runUsershard(["query", "--grpc", `127.0.0.1:${a.grpc}`], {
      stdin: "7\n\n3\n5\n:q\n7\n",
    });
    assert.equal(session.code, 0, session.stderr);
    assert.equal(
      session.stdout,
      [
        PROMPT,
        "User 7 has made 1 purchase for a total of 3096p",
        PROMPT,
        PROMPT,
        "User 3 has made 1 purchase for a total of 12060p",
        PROMPT,
        "User 5 has made 0 purchases for a total of 0p",
        PROMPT,
        "",
      ].join("\n"),
    );
    assert.equal(session.stderr, "usershard query: user '': the user id is empty\n");

    const endOfInput = await runUsershard(["query", "--grpc", `127.0.0.1:${a.grpc}`], { stdin: "7" });
    assert.equal(endOfInput.code, 0);
    assert.match(endOfInput.stdout, /User 7 has made 1 purchase/);
  });
});

Deno.test("a dead node is one line and exit 1; in the loop, the line and the loop goes on", async () => {
  const dead = `127.0.0.1:${freePort()}`;
  const once = await runUsershard(["query", "--grpc", dead, "7", "8"]);
  assert.equal(once.code, 1);
  assert.equal(once.stdout, "");
  assert.equal(once.stderr.trim().split("\n").length, 1, once.stderr);
  assert.match(once.stderr, new RegExp(`^usershard query: cannot reach ${dead}: .*ECONNREFUSED`));

  const loop = await runUsershard(["query", "--grpc", dead], { stdin: "7\n8\n" });
  assert.equal(loop.code, 0);
  assert.equal(loop.stderr.trim().split("\n").length, 2, loop.stderr);
  assert.equal(loop.stdout.split(PROMPT).length - 1, 3);

  const bad = await runUsershard(["query", "--grpc", "nohostport", "7"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--grpc must be host:port, got 'nohostport'/);
});

Deno.test("gRPC statuses: INVALID_ARGUMENT, DEADLINE_EXCEEDED, UNAVAILABLE; health and reflection", async () => {
  await withNodes("query", async (started, stream) => {
    // A node that waits for a first seed that never comes: no coordinator, so no shard can be reached.
    const [lonely, missing] = nodePorts(2);
    started.push(startProcessor(lonely, [missing, lonely], stream, ["--ask-timeout", "1s"]));
    const target = `127.0.0.1:${lonely.grpc}`;
    const client = new UserStatsClient(target);
    try {
      await eventually("gRPC listening", async () => {
        try {
          await client.userStats("", 2000);
        } catch (error) {
          return error instanceof QueryError && error.code === grpc.status.INVALID_ARGUMENT;
        }
      }, 30_000);
      const failure = async (id: string, deadlineMs: number) => {
        try {
          await client.userStats(id, deadlineMs);
        } catch (error) {
          if (error instanceof QueryError) return error;
          throw error;
        }
        assert.fail("expected an error");
      };
      const empty = await failure("", 5000);
      assert.equal(empty.code, grpc.status.INVALID_ARGUMENT);
      assert.match(empty.message, /the user id is empty/);
      const tooLong = await failure("x".repeat(300), 5000);
      assert.equal(tooLong.code, grpc.status.INVALID_ARGUMENT);
      const unavailable = await failure("7", 5000);
      assert.equal(unavailable.code, grpc.status.UNAVAILABLE, unavailable.message);
      assert.match(unavailable.message, /shard \d+ of user 7 could not be reached within 1000 ms/);
      const late = await failure("7", 400);
      assert.equal(late.code, grpc.status.DEADLINE_EXCEEDED, late.message);
    } finally {
      client.close();
    }

    const raw = new grpc.Client(target, grpc.credentials.createInsecure());
    try {
      const check = serviceDefinition(Health).Check as grpc.MethodDefinition<unknown, HealthCheckResponse>;
      const health = (service: string) =>
        new Promise<HealthCheckResponse | grpc.ServiceError>((resolve) =>
          raw.makeUnaryRequest(
            check.path,
            check.requestSerialize,
            check.responseDeserialize,
            create(HealthCheckRequestSchema, { service }),
            (error, response) => resolve(error ?? response!),
          )
        );
      const notServing = await health("") as HealthCheckResponse;
      assert.equal(notServing.status, ServingStatus.NOT_SERVING);
      assert.equal((await health("NoSuchService") as grpc.ServiceError).code, grpc.status.NOT_FOUND);

      const info = serviceDefinition(ServerReflection).ServerReflectionInfo as grpc.MethodDefinition<
        ServerReflectionRequest,
        ServerReflectionResponse
      >;
      const reflect = (request: ServerReflectionRequest) =>
        new Promise<ServerReflectionResponse>((resolve, reject) => {
          const call = raw.makeBidiStreamRequest(info.path, info.requestSerialize, info.responseDeserialize);
          call.on("data", (response: ServerReflectionResponse) => resolve(response));
          call.on("error", reject);
          call.write(request);
          call.end();
        });
      const list = await reflect(
        create(ServerReflectionRequestSchema, { messageRequest: { case: "listServices", value: "" } }),
      );
      assert.equal(list.messageResponse.case, "listServicesResponse");
      const names = list.messageResponse.case === "listServicesResponse"
        ? list.messageResponse.value.service.map((s) => s.name)
        : [];
      for (const name of ["UserService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]) {
        assert.ok(names.includes(name), `${name} in ${names}`);
      }
      const file = await reflect(
        create(ServerReflectionRequestSchema, {
          messageRequest: { case: "fileContainingSymbol", value: "UserService" },
        }),
      );
      assert.equal(file.messageResponse.case, "fileDescriptorResponse");
      if (file.messageResponse.case === "fileDescriptorResponse") {
        const descriptor = fromBinary(FileDescriptorProtoSchema, file.messageResponse.value.fileDescriptorProto[0]);
        assert.equal(descriptor.name, "users.proto");
        assert.deepEqual(descriptor.service[0].method.map((m) => m.name), ["UserStats"]);
        assert.deepEqual(descriptor.messageType.map((m) => m.name), ["UserStatsRequest", "UserStatsResponse"]);
      }

      // Once the first seed comes, the node is ready and the health service says so.
      started.push(startProcessor(missing, [missing, lonely], stream));
      await eventually("health SERVING", async () => {
        const answer = await health("UserService");
        return "status" in answer && answer.status === ServingStatus.SERVING;
      }, 60_000);
    } finally {
      raw.close();
    }
  });
});
