import assert from "node:assert/strict";
import { UserService } from "../proto/gen/users_pb.ts";
import { Health } from "../proto/gen/grpc/health/v1/health_pb.ts";
import { GrpcClient, NotGrpcError } from "./client.ts";
import { Http2Client } from "./http2/client.ts";
import { GrpcBindError, GrpcServer, serverStreaming, unary } from "./server.ts";
import { GrpcError, Status } from "./status.ts";

/** A server with test routes on a free port, and a client of it; both closed after `run`. */
async function withServer(run: (client: GrpcClient, port: number) => Promise<void>): Promise<void> {
  const server = GrpcServer.start("127.0.0.1", 0, [
    unary(UserService.method.userStats, async (request, context) => {
      if (request.id === "slow") await new Promise((resolve) => setTimeout(resolve, 2_000));
      if (request.id === "deadline") return { id: String(context.timeoutMs()) };
      if (request.id === "refused") throw new GrpcError(Status.NOT_FOUND, "no user refused: é 100%");
      if (request.id === "bug") throw new Error("a secret stack trace");
      return { id: request.id, totalPurchases: 2n, amountSpent: 3096n };
    }),
    serverStreaming(Health.method.watch, async function* () {
      for (const status of [1, 2, 1]) yield { status };
    }),
  ]);
  const client = new GrpcClient("127.0.0.1", server.addr.port);
  try {
    await run(client, server.addr.port);
  } finally {
    client.close();
    await server.close();
  }
}

const stats = UserService.method.userStats;

Deno.test("a unary call answers; an error carries its status and message; a bug is INTERNAL, unexplained", async () => {
  await withServer(async (client) => {
    assert.deepEqual(
      { ...(await client.unary(stats, { id: "7" }, 5000)) },
      { $typeName: "UserStatsResponse", id: "7", totalPurchases: 2n, amountSpent: 3096n },
    );
    await assert.rejects(client.unary(stats, { id: "refused" }, 5000), (error: GrpcError) => {
      assert.deepEqual([error.code, error.message], [Status.NOT_FOUND, "no user refused: é 100%"]);
      return true;
    });
    await assert.rejects(client.unary(stats, { id: "bug" }, 5000), (error: GrpcError) => {
      assert.deepEqual([error.code, error.message], [Status.INTERNAL, "internal error"]);
      return true;
    });
  });
});

Deno.test("the client's deadline reaches the handler, and a call past it ends DEADLINE_EXCEEDED", async () => {
  await withServer(async (client) => {
    const left = Number((await client.unary(stats, { id: "deadline" }, 3000)).id);
    assert.ok(left > 2000 && left <= 3000, `${left} ms left`);
    await assert.rejects(client.unary(stats, { id: "slow" }, 300), (error: GrpcError) => {
      assert.equal(error.code, Status.DEADLINE_EXCEEDED);
      return true;
    });
    // The connection goes on.
    assert.equal((await client.unary(stats, { id: "8" }, 5000)).id, "8");
  });
});

Deno.test("server streaming sends each message, then OK", async () => {
  await withServer(async (client) => {
    const messages = await client.call("/grpc.health.v1.Health/Watch", [new Uint8Array(0)], 5000);
    assert.deepEqual(messages.map((m) => [...m]), [[8, 1], [8, 2], [8, 1]]);
  });
});

Deno.test("what is not a call of a known method gets the answer gRPC gives it", async () => {
  await withServer(async (client, port) => {
    await assert.rejects(client.call("/No/Such", [new Uint8Array(0)], 5000), (error: GrpcError) => {
      assert.deepEqual([error.code, error.message], [Status.UNIMPLEMENTED, "no method /No/Such on this server"]);
      return true;
    });
    await assert.rejects(client.call("/UserService/UserStats", [], 5000), (error: GrpcError) => {
      assert.equal(error.code, Status.UNIMPLEMENTED);
      return true;
    });
    await assert.rejects(client.call("/UserService/UserStats", [Uint8Array.of(0xff)], 5000), (error: GrpcError) => {
      assert.equal(error.code, Status.INTERNAL);
      assert.match(error.message, /not a UserStatsRequest/);
      return true;
    });
    const raw = new Http2Client("127.0.0.1", port);
    try {
      const cases: [string, [string, string][], string][] = [
        ["a GET", [[":method", "GET"], ["content-type", "application/grpc"]], "405"],
        ["JSON", [[":method", "POST"], ["content-type", "application/json"]], "415"],
      ];
      for (const [what, extra, status] of cases) {
        const stream = await raw.open([[":scheme", "http"], [":path", "/UserService/UserStats"], ...extra]);
        await stream.end();
        assert.equal(new Map(await stream.receivedHeaders()).get(":status"), status, what);
      }
      const compressed = await raw.open([
        [":method", "POST"],
        [":scheme", "http"],
        [":path", "/UserService/UserStats"],
        ["content-type", "application/grpc"],
        ["grpc-encoding", "gzip"],
      ]);
      await compressed.end();
      const headers = new Map(await compressed.receivedHeaders());
      assert.equal(headers.get("grpc-status"), String(Status.UNIMPLEMENTED));
    } finally {
      raw.close();
    }
  });
});

Deno.test("a port in use is one GrpcBindError; a port that is no gRPC server is NotGrpcError", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  try {
    assert.throws(() => GrpcServer.start("127.0.0.1", port, []), (error: Error) => {
      assert.ok(error instanceof GrpcBindError);
      assert.equal(error.message, `gRPC port 127.0.0.1:${port} is already in use`);
      return true;
    });
  } finally {
    taken.close();
  }
  const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => new Response("hello"));
  const client = new GrpcClient("127.0.0.1", http.addr.port);
  try {
    await assert.rejects(client.unary(stats, { id: "7" }, 5000), NotGrpcError);
  } finally {
    client.close();
    await http.shutdown();
  }
});
