import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { UserService, UserStatsRequestSchema } from "../proto/gen/users_pb.ts";
import { Health } from "../proto/gen/grpc/health/v1/health_pb.ts";
import { GrpcClient, NotGrpcError } from "./client.ts";
import { Http2Client } from "./http2/client.ts";
import { ErrorCode } from "./http2/frame.ts";
import { encodeMessage } from "./protocol.ts";
import {
  DEFAULT_SERVER_LIMITS,
  GrpcBindError,
  GrpcServer,
  type GrpcServerLimits,
  serverStreaming,
  unary,
} from "./server.ts";
import { GrpcError, Status } from "./status.ts";
import { within } from "../cluster/remoting/errors.ts";
import { certificates } from "../tests/support/certificates.ts";

/** A server with test routes on a free port, and a client of it; both closed after `run`. */
async function withServer(
  run: (client: GrpcClient, port: number) => Promise<void>,
  limits: Partial<GrpcServerLimits> = {},
): Promise<void> {
  const server = await GrpcServer.start("127.0.0.1", 0, [
    unary(UserService.method.userStats, async (request, context) => {
      if (request.id === "slow") await new Promise((resolve) => setTimeout(resolve, 2_000));
      if (request.id === "big") return { id: "b".repeat(200_000) };
      if (request.id === "deadline") return { id: String(context.timeoutMs()) };
      if (request.id === "refused") throw new GrpcError(Status.NOT_FOUND, "no user refused: é 100%");
      if (request.id === "bug") throw new Error("a secret stack trace");
      return { id: request.id, totalPurchases: 2n, amountSpent: 3096n };
    }),
    serverStreaming(Health.method.watch, async function* () {
      for (const status of [1, 2, 1]) yield { status };
    }),
  ], { ...DEFAULT_SERVER_LIMITS, ...limits });
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
    await assert.rejects(GrpcServer.start("127.0.0.1", port, []), (error: Error) => {
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

/** A UserStats request message, serialized. */
const request = (init: { id: string }) => toBinary(UserStatsRequestSchema, create(UserStatsRequestSchema, init));

/** Request headers of a call to UserStats, as a raw HTTP/2 client sends them. */
const CALL: [string, string][] = [
  [":method", "POST"],
  [":scheme", "http"],
  [":path", "/UserService/UserStats"],
  ["content-type", "application/grpc"],
  ["te", "trailers"],
];

Deno.test("calls over the server's limit are refused RESOURCE_EXHAUSTED; the next one after runs", async () => {
  await withServer(async (client) => {
    const slow = client.unary(stats, { id: "slow" }, 5000);
    await assert.rejects(client.unary(stats, { id: "7" }, 5000), (error: GrpcError) => {
      assert.equal(error.code, Status.RESOURCE_EXHAUSTED);
      assert.match(error.message, /runs 1 calls at once/);
      return true;
    });
    await slow;
    assert.equal((await client.unary(stats, { id: "8" }, 5000)).id, "8");
  }, { maxCallsInFlight: 1 });
});

Deno.test("a request over the size limit is RESOURCE_EXHAUSTED; one never finished is reset in time", async () => {
  await withServer(async (client, port) => {
    const big = request({ id: "x".repeat(2000) });
    await assert.rejects(client.call("/UserService/UserStats", [big], 5000), (error: GrpcError) => {
      assert.equal(error.code, Status.RESOURCE_EXHAUSTED);
      return true;
    });
    const raw = new Http2Client("127.0.0.1", port);
    try {
      // Half a message, and then nothing: no deadline of its own keeps the call open past the request timeout.
      const stream = await raw.open(CALL);
      await stream.write(encodeMessage(request({ id: "7" })).subarray(0, 3));
      const reset = new Promise((resolve) => stream.signal.addEventListener("abort", resolve));
      await within(reset, 5000, "the server's reset of the unfinished request");
      assert.equal(stream.failure?.code, ErrorCode.CANCEL);
    } finally {
      raw.close();
    }
  }, { maxRequestBytes: 1000, requestTimeoutMs: 300 });
});

Deno.test("an answer the client does not read is reset at the deadline, not left waiting for its window", async () => {
  await withServer(async (_, port) => {
    const raw = new Http2Client("127.0.0.1", port);
    try {
      const stream = await raw.open([...CALL, ["grpc-timeout", "300m"]]);
      await stream.write(encodeMessage(request({ id: "big" })), true);
      await stream.receivedHeaders();
      // Its body is never read, so the stream window the 200 kB answer needs never opens.
      const reset = new Promise((resolve) => stream.signal.addEventListener("abort", resolve));
      await within(reset, 5000, "the server's reset of the answer");
      assert.equal(stream.failure?.code, ErrorCode.CANCEL);
    } finally {
      raw.close();
    }
  });
});

Deno.test("mutual TLS: a client with a certificate the CA signed gets large answers, many at once; one without is refused, and the server serves on", async () => {
  const files = await certificates();
  const [ca, cert, key, clientCert, clientKey] = await Promise.all(
    [files.ca, files.cert, files.key, files.clientCert, files.clientKey].map((path) => Deno.readTextFile(path)),
  );
  const big = "b".repeat(200_000);
  const server = await GrpcServer.start(
    "127.0.0.1",
    0,
    [unary(stats, (request) => Promise.resolve({ id: request.id === "big" ? big : request.id }))],
    DEFAULT_SERVER_LIMITS,
    { cert, key, clientCa: ca },
  );
  const signed = new GrpcClient("localhost", server.addr.port, { ca, cert: clientCert, key: clientKey });
  const anonymous = new GrpcClient("localhost", server.addr.port, { ca });
  try {
    const answers = await Promise.all(Array.from({ length: 20 }, () => signed.unary(stats, { id: "big" }, 20_000)));
    assert.ok(answers.every((answer) => answer.id === big));
    await assert.rejects(anonymous.unary(stats, { id: "7" }, 5000));
    assert.equal((await signed.unary(stats, { id: "7" }, 5000)).id, "7");
    const tls = { cert, key, clientCa: ca };
    await assert.rejects(
      GrpcServer.start("127.0.0.1", server.addr.port, [], DEFAULT_SERVER_LIMITS, tls),
      GrpcBindError,
    );
  } finally {
    signed.close();
    anonymous.close();
    await server.close();
  }
});
