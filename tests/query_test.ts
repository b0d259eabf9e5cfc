import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../proto/gen/grpc/health/v1/health_pb.ts";
import {
  type ServerReflectionRequest,
  ServerReflectionRequestSchema,
  type ServerReflectionResponse,
  ServerReflectionResponseSchema,
} from "../proto/gen/grpc/reflection/v1/reflection_pb.ts";
import { GrpcClient } from "../grpc/client.ts";
import { GrpcError, Status } from "../grpc/status.ts";
import { QueryError, UserStatsClient } from "../grpc/user_client.ts";
import { PROMPT } from "../commands/query.ts";
import { runUsershard } from "./support/cli.ts";
import { usershardCommand } from "../scripts/usershard_process.ts";
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
import { grpcio, grpcJs } from "./support/foreign_clients.ts";
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
    await createTopic(stream.topic, 16);
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
    // Clients of other stacks made from users.proto alone (as the sample's is), not from this project's code.
    for (const [node, client] of [[b, grpcJs], [c, grpcio]] as const) {
      const foreign = await client(`127.0.0.1:${node.grpc}`, "ask", users);
      assert.deepEqual(foreign.answers, Object.fromEntries(expected), client.name);
    }

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
    await createTopic(stream.topic, 16);
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

/** Runs `usershard` with its standard output closed before it writes, as `| head -1` leaves it. */
async function withStdoutClosed(args: readonly string[]): Promise<{ code: number; stderr: string }> {
  const child = usershardCommand(args).spawn();
  await child.stdout.cancel();
  const [status, stderr] = await Promise.all([child.status, new Response(child.stderr).text()]);
  return { code: status.code, stderr };
}

Deno.test("the interactive loop: answers on stdout, the prompt on stderr, blank lines skipped, exit 1 after a failure", async () => {
  await withNodes("query", async (started, stream) => {
    const kafka = testKafka();
    await createTopic(stream.topic, 4);
    const purchases = [
      { userId: "7", product: "skis", quantity: 2, price: 1548 },
      { userId: "3", product: "rope", quantity: 1, price: 12060 },
    ];
    await producePurchases(kafka, stream.topic, purchases);
    const [a] = nodePorts(1);
    started.push(startProcessor(a, [a], stream));
    // A bare port is localhost:PORT.
    const grpcFlag = ["--grpc", String(a.grpc)];
    await eventually("user 3 processed", async () => {
      const result = await runUsershard(["query", ...grpcFlag, "3"]);
      return result.code === 0 && result.stdout.includes("has made 1 purchase");
    }, 60_000);

    const session = await runUsershard(["query", ...grpcFlag], { stdin: "7\n\n3\n  \n5\n:q\n7\n" });
    assert.equal(session.code, 0, session.stderr);
    assert.equal(
      session.stdout,
      [
        "User 7 has made 1 purchase for a total of 3096p",
        "User 3 has made 1 purchase for a total of 12060p",
        "User 5 has made 0 purchases for a total of 0p",
        "",
      ].join("\n"),
    );
    assert.equal(session.stderr, `${PROMPT}\n`.repeat(6));

    const json = await runUsershard(["query", ...grpcFlag, "--json"], { stdin: "7\n3\n" });
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(json.stdout.trim().split("\n").map((line) => JSON.parse(line)), [
      { id: "7", totalPurchases: 1, amountSpent: 3096 },
      { id: "3", totalPurchases: 1, amountSpent: 12060 },
    ]);

    const failing = await runUsershard(["query", ...grpcFlag], { stdin: `7\n${"x".repeat(300)}\n3\n` });
    assert.equal(failing.code, 1);
    assert.equal(failing.stdout.trim().split("\n").length, 2, "the loop goes on after a failure");
    assert.deepEqual(failing.stderr.split("\n").filter((line) => line !== PROMPT), [
      `usershard query: user "${"x".repeat(64)}…": the user id is longer than 256 characters`,
      "",
    ]);

    const endOfInput = await runUsershard(["query", ...grpcFlag], { stdin: "7" });
    assert.equal(endOfInput.code, 0);
    assert.match(endOfInput.stdout, /User 7 has made 1 purchase/);

    const ids = Array.from({ length: 200 }, (_, i) => String(i));
    assert.deepEqual(await withStdoutClosed(["query", ...grpcFlag, ...ids]), { code: 0, stderr: "" });

    // Other ports of the same node: one line with a hint at --grpc.
    for (const [port, kind] of [[a.mgmt, "management"], [a.remoting, "remoting"]] as const) {
      const wrong = await runUsershard(["query", "--grpc", `127.0.0.1:${port}`, "7", "3"]);
      assert.equal(wrong.code, 1, kind);
      assert.equal(wrong.stdout, "", kind);
      assert.match(
        wrong.stderr,
        new RegExp(
          `^usershard query: [^\n]*\\(is ${port} a usershard gRPC port\\? --grpc takes the node's --grpc port\\)\n$`,
        ),
        kind,
      );
    }
  });
});

Deno.test("a dead node is one line and exit 1; in the loop, a line per id and exit 1; bad flags exit 2", async () => {
  const dead = `127.0.0.1:${freePort()}`;
  const once = await runUsershard(["query", "--grpc", dead, "7", "8"]);
  assert.equal(once.code, 1);
  assert.equal(once.stdout, "");
  assert.equal(once.stderr.trim().split("\n").length, 1, once.stderr);
  assert.match(once.stderr, new RegExp(`^usershard query: cannot reach ${dead}: .*ECONNREFUSED`));

  const loop = await runUsershard(["query", "--grpc", dead], { stdin: "7\n8\n" });
  assert.equal(loop.code, 1);
  assert.equal(loop.stdout, "");
  const lines = loop.stderr.trim().split("\n");
  assert.equal(lines.filter((line) => line === PROMPT).length, 3, loop.stderr);
  assert.deepEqual(
    lines.filter((line) => line !== PROMPT).map((line) => line.replace(/: cannot reach .*ECONNREFUSED.*$/, "")),
    ["usershard query: user 7", "usershard query: user 8"],
  );

  const usage: [string[], string][] = [
    [["--grpc", "nohostport"], "--grpc must be a port (1-65535) or host:port, got 'nohostport'"],
    [["--grpc", "99999"], "--grpc must be a port (1-65535) or host:port, got '99999'"],
    [["--timeout", "0s"], "--timeout must be a duration above zero"],
    [["--timeout", "0"], "--timeout must be a duration above zero"],
  ];
  const results = await Promise.all(usage.map(([flags]) => runUsershard(["query", ...flags, "7"])));
  for (const [i, result] of results.entries()) {
    assert.equal(result.code, 2, result.stderr);
    assert.equal(result.stderr.split("\n").length, 2, result.stderr);
    assert.ok(result.stderr.startsWith(`usershard query: ${usage[i][1]}`), result.stderr);
  }
});

Deno.test("a node outside a cluster: gRPC statuses and the CLI's lines for them; health and reflection", async () => {
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
          return error instanceof QueryError && error.code === Status.INVALID_ARGUMENT;
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
      assert.equal(empty.code, Status.INVALID_ARGUMENT);
      assert.match(empty.message, /the user id is empty/);
      const tooLong = await failure("x".repeat(300), 5000);
      assert.equal(tooLong.code, Status.INVALID_ARGUMENT);
      const unavailable = await failure("7", 5000);
      assert.equal(unavailable.code, Status.UNAVAILABLE, unavailable.message);
      assert.match(unavailable.message, /shard \d+ of user 7 could not be reached within 1000 ms/);
      // The server gives up a little before the client's deadline (200 ms, inside its 1 s ask timeout), so its
      // answer names the shard.
      const late = await failure("7", 1100);
      assert.equal(late.code, Status.DEADLINE_EXCEEDED, late.message);
      assert.match(late.message, /^shard \d+ of user 7 did not answer before the client's deadline of \d+ ms: /);
    } finally {
      client.close();
    }

    // Each error line of the CLI starts with its user; a deadline too short for the server's answer is said plainly.
    const cli = await Promise.all(
      ["1100ms", "20ms"].map((timeout) => runUsershard(["query", "--grpc", target, "--timeout", timeout, "16", "17"])),
    );
    for (const result of cli) assert.equal(result.code, 1, result.stderr);
    const deadlineLines = cli[0].stderr.split("\n");
    assert.equal(deadlineLines.length, 3, cli[0].stderr);
    for (const [i, user] of ["16", "17"].entries()) {
      assert.match(
        deadlineLines[i],
        new RegExp(
          `^usershard query: user ${user}: shard \\d+ of user ${user} did not answer before the client's deadline`,
        ),
      );
      assert.match(deadlineLines[i], /\(DEADLINE_EXCEEDED\)$/);
    }
    assert.equal(
      cli[1].stderr,
      "usershard query: user 16: no answer within 20 ms (DEADLINE_EXCEEDED)\n" +
        "usershard query: user 17: no answer within 20 ms (DEADLINE_EXCEEDED)\n",
    );

    // Outside a cluster there is no placement to show: `shards --all` says so and fails.
    for (const json of [[], ["--json"]]) {
      const all = await runUsershard([
        "shards",
        "--node",
        String(lonely.mgmt),
        "--all",
        "--type",
        stream.group,
        ...json,
      ]);
      assert.equal(all.code, 1, all.stderr);
      assert.equal(all.stdout, "");
      assert.match(all.stderr, /^usershard shards: 127\.0\.0\.1:\d+ knows no Up members, [^\n]*\n$/);
    }

    const raw = new GrpcClient("127.0.0.1", lonely.grpc);
    try {
      const health = (service: string) =>
        raw.unary(Health.method.check, { service }, 5000).then((r) => r.status, (error: GrpcError) => error);
      assert.equal(await health(""), ServingStatus.NOT_SERVING);
      assert.equal((await health("NoSuchService") as GrpcError).code, Status.NOT_FOUND);

      const reflect = async (messageRequest: ServerReflectionRequest["messageRequest"]) => {
        const request = toBinary(
          ServerReflectionRequestSchema,
          create(ServerReflectionRequestSchema, { messageRequest }),
        );
        const answers: ServerReflectionResponse[] = (
          await raw.call("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", [request], 5000)
        ).map((bytes) => fromBinary(ServerReflectionResponseSchema, bytes));
        assert.equal(answers.length, 1);
        return answers[0];
      };
      const list = await reflect({ case: "listServices", value: "" });
      assert.equal(list.messageResponse.case, "listServicesResponse");
      const names = list.messageResponse.case === "listServicesResponse"
        ? list.messageResponse.value.service.map((s) => s.name)
        : [];
      for (const name of ["UserService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]) {
        assert.ok(names.includes(name), `${name} in ${names}`);
      }
      const file = await reflect({ case: "fileContainingSymbol", value: "UserService" });
      assert.equal(file.messageResponse.case, "fileDescriptorResponse");
      if (file.messageResponse.case === "fileDescriptorResponse") {
        const descriptor = fromBinary(FileDescriptorProtoSchema, file.messageResponse.value.fileDescriptorProto[0]);
        assert.equal(descriptor.name, "users.proto");
        assert.deepEqual(descriptor.service[0].method.map((m) => m.name), ["UserStats"]);
        assert.deepEqual(descriptor.messageType.map((m) => m.name), ["UserStatsRequest", "UserStatsResponse"]);
      }

      // Once the first seed comes, the node is ready and the health service says so.
      started.push(startProcessor(missing, [missing, lonely], stream));
      await eventually("health SERVING", async () => (await health("UserService")) === ServingStatus.SERVING, 60_000);
    } finally {
      raw.close();
    }
  });
});

/** `usershard query` in its interactive loop, fed one line at a time, its answers read one line at a time. */
class InteractiveQuery {
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #lines: AsyncIterator<string>;

  constructor(args: readonly string[]) {
    this.#child = usershardCommand(["query", ...args], { stdin: "piped" }).spawn();
    this.#stdin = this.#child.stdin.getWriter();
    this.#lines = this.#child.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(splitLines())[
      Symbol.asyncIterator
    ]();
    // Its stderr holds prompts and error lines; read so that it never blocks on a full pipe.
    this.stderr = new Response(this.#child.stderr).text();
  }

  readonly stderr: Promise<string>;

  /** Sends an id and waits for the answer line. */
  async ask(id: string): Promise<string> {
    await this.#stdin.write(new TextEncoder().encode(`${id}\n`));
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`no answer for ${id} within 30 s`)), 30_000)
    );
    const line = await Promise.race([this.#lines.next(), timeout]);
    if (line.done) throw new Error(`usershard query ended before answering ${id}: ${await this.stderr}`);
    return line.value;
  }

  /** Ends the loop with :q and returns its exit code. */
  async quit(): Promise<number> {
    await this.#stdin.write(new TextEncoder().encode(":q\n"));
    await this.#stdin.close();
    return (await this.#child.status).code;
  }
}

function splitLines(): TransformStream<string, string> {
  let pending = "";
  return new TransformStream({
    transform(text, controller) {
      const parts = (pending + text).split("\n");
      pending = parts.pop()!;
      for (const part of parts) controller.enqueue(part);
    },
    flush(controller) {
      if (pending) controller.enqueue(pending);
    },
  });
}

Deno.test("the interactive loop outlives its node's restart, and moves on to the next --grpc node", async () => {
  await withNodes("query", async (started, stream) => {
    const kafka = testKafka();
    await createTopic(stream.topic, 4);
    await producePurchases(kafka, stream.topic, [{ userId: "7", product: "skis", quantity: 2, price: 1548 }]);
    const [a] = nodePorts(1);
    const first = startProcessor(a, [a], stream);
    started.push(first);
    const answer = "User 7 has made 1 purchase for a total of 3096p";
    await eventually("user 7 processed", async () => {
      const result = await runUsershard(["query", "--grpc", String(a.grpc), "7"]);
      return result.stdout.trim() === answer;
    }, 60_000);

    // The node leaves (its GOAWAY reaches the loop's idle connection) and starts again at the same ports, while
    // the loop waits for input.
    const loop = new InteractiveQuery(["--grpc", String(a.grpc)]);
    assert.equal(await loop.ask("7"), answer);
    first.kill("SIGTERM");
    assert.equal((await first.exited(30_000)).code, 0);
    const second = startProcessor(a, [a], stream);
    started.push(second);
    await eventually("the node back", async () => {
      const result = await runUsershard(["query", "--grpc", String(a.grpc), "7"]);
      return result.stdout.trim() === answer;
    }, 60_000);
    assert.equal(await loop.ask("7"), answer);
    assert.equal(await loop.quit(), 0, await loop.stderr);

    // With several nodes, one that cannot be reached is left for the next.
    const failover = new InteractiveQuery(["--grpc", `127.0.0.1:${freePort()},127.0.0.1:${a.grpc}`]);
    assert.equal(await failover.ask("7"), answer);
    assert.equal(await failover.quit(), 0, await failover.stderr);
  });
});
