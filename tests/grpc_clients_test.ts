/**
 * No client can take a node down: one real node, driven in turn by grpc-js on
 * Node.js and grpcio with the connection patterns of real services, by h2load,
 * and by raw sockets that break HTTP/2 on purpose. After each, the node is
 * the same process and answers every user exactly.
 */
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { UserStatsClient } from "../grpc/user_client.ts";
import {
  concatBytes,
  decodeSettings,
  encodeFrame,
  encodeGoAway,
  encodeRstStream,
  encodeSettings,
  ErrorCode,
  Flag,
  type Frame,
  FrameDecoder,
  FrameType,
  PREFACE,
  uint32,
} from "../grpc/http2/frame.ts";
import { encodeHeaders } from "../grpc/http2/hpack.ts";
import { UserStatsRequestSchema } from "../proto/gen/users_pb.ts";
import { eventually, nodePorts, startProcessor, withNodes } from "./support/cluster.ts";
import { type ClientRun, grpcio, grpcJs } from "./support/foreign_clients.ts";
import { createTopic, expectedTotals, knownPurchases, producePurchases, testKafka } from "./support/kafka.ts";
import type { RunningUsershard } from "./support/process.ts";
import { seededRandom } from "../cluster/seeded_random.ts";

type Totals = Map<string, { totalPurchases: number; amountSpent: number }>;

/** Every user's totals from `target` through gRPC; the differences from `expected`, described. */
async function differences(target: string, expected: Totals): Promise<string[]> {
  const client = new UserStatsClient(target);
  try {
    const answers = await Promise.all(
      [...expected.keys()].map((user) => client.userStats(user, 15_000).catch((error: Error) => error.message)),
    );
    return [...expected].flatMap(([user, want], i) => {
      const got = answers[i];
      const same = typeof got !== "string" && got.totalPurchases === want.totalPurchases &&
        got.amountSpent === want.amountSpent;
      return same ? [] : [`user ${user}: ${JSON.stringify(got)}, want ${JSON.stringify(want)}`];
    });
  } finally {
    client.close();
  }
}

/** The answers a client run got, each checked against the topic's totals. */
function wrongAnswers(run: ClientRun, expected: Totals): string[] {
  return Object.entries(run.answers).flatMap(([user, got]) =>
    JSON.stringify(got) === JSON.stringify(expected.get(user)) ? [] : [`user ${user}: ${JSON.stringify(got)}`]
  );
}

/** A UserStats request as one gRPC message (5-byte prefix, then the protobuf). */
function grpcMessage(user: string): Uint8Array {
  const message = toBinary(UserStatsRequestSchema, create(UserStatsRequestSchema, { id: user }));
  const framed = new Uint8Array(5 + message.length);
  new DataView(framed.buffer).setUint32(1, message.length);
  framed.set(message, 5);
  return framed;
}

const REQUEST_HEADERS = encodeHeaders([
  [":method", "POST"],
  [":scheme", "http"],
  [":path", "/UserService/UserStats"],
  [":authority", "localhost"],
  ["content-type", "application/grpc"],
  ["te", "trailers"],
]);

/** The frames of a whole request for `user` on stream `id`. */
function request(id: number, user: string): Uint8Array[] {
  return [
    encodeFrame(FrameType.HEADERS, Flag.END_HEADERS, id, REQUEST_HEADERS),
    encodeFrame(FrameType.DATA, Flag.END_STREAM, id, grpcMessage(user)),
  ];
}

/** A raw TCP connection to the gRPC port that writes what a test says and reads frames until the server closes. */
async function rawConnection(port: number, write: Uint8Array[], closeAfterWrite = false): Promise<Frame[]> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(concatBytes(write));
    if (closeAfterWrite) return [];
    const decoder = new FrameDecoder(1 << 24);
    const frames: Frame[] = [];
    const buffer = new Uint8Array(64 << 10);
    const deadline = setTimeout(() => conn.close(), 20_000);
    try {
      for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
        decoder.push(buffer.subarray(0, n));
        for (let frame = decoder.next(); frame; frame = decoder.next()) frames.push(frame);
      }
    } catch {
      // Reset by the server, or closed by the deadline: what arrived is what counts.
    } finally {
      clearTimeout(deadline);
    }
    return frames;
  } finally {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}

const goAwayCode = (frames: Frame[]) => {
  const frame = frames.find((f) => f.type === FrameType.GOAWAY);
  return frame && uint32(frame.payload, 4);
};

Deno.test("no client can take a node down; after each, the same process answers every user exactly", async (t) => {
  await withNodes("clients", async (started, stream) => {
    const kafka = testKafka();
    await createTopic(stream.topic, 8);
    const purchases = knownPurchases(400, 50, 21);
    await producePurchases(kafka, stream.topic, purchases);
    const expected = expectedTotals(purchases);
    const users = [...expected.keys()];
    // Every other id empty: calls that end in an error status are what made node:http2 abort.
    const asked = users.flatMap((user) => [user, ""]);
    const answered = (run: ClientRun, total: number, cancelled = false) => {
      assert.ok(node.running, `the node died:\n${node.stderr.split("\n").slice(-5).join("\n")}`);
      const { INVALID_ARGUMENT = 0, CANCELLED = 0, ...other } = run.failed;
      assert.deepEqual(other, {}, "no call fails but for the empty id (and cancels)");
      assert.ok(INVALID_ARGUMENT > 0, "the empty id was asked");
      assert.equal(run.ok + INVALID_ARGUMENT + (cancelled ? CANCELLED : 0), total);
      assert.deepEqual(wrongAnswers(run, expected), []);
    };
    const [ports] = nodePorts(1);
    const target = `127.0.0.1:${ports.grpc}`;
    let node: RunningUsershard;
    let pid: number;
    const start = async () => {
      node = startProcessor(ports, [ports], stream);
      started.push(node);
      pid = node.pid;
      // Ready and caught up, asked over management HTTP: a fresh node's first gRPC connection is the one
      // node:http2 aborted on most often, so the first gRPC client must be grpc-js.
      await eventually("the node ready, every event processed", async () => {
        const ready = await fetch(`http://127.0.0.1:${ports.mgmt}/ready`).then((r) => r.text()).catch(() => "");
        const stats = await fetch(`http://127.0.0.1:${ports.mgmt}/stats`).then((r) => r.json()).catch(() => {});
        return ready === "OK" && stats?.lag === 0;
      }, 90_000);
    };
    const stillExact = async (after: string) => {
      assert.ok(node.running, `the node died after ${after}:\n${node.stderr.split("\n").slice(-20).join("\n")}`);
      assert.equal(node.pid, pid);
      assert.deepEqual((await differences(target, expected)).slice(0, 5), [], `after ${after}`);
    };

    await t.step("grpc-js on Node.js, first on three fresh starts: 200 calls at once, then close()", async () => {
      // Under node:http2, two fresh nodes in three aborted on this; three starts make a miss unlikely.
      for (let run = 0; run < 3; run++) {
        if (run > 0) await node.stop();
        await start();
        answered(await grpcJs(target, "rounds", asked), 1000);
      }
      await stillExact("grpc-js rounds");
    });
    await t.step("grpc-js on Node.js: calls cancelled and the client closed mid-flight", async () => {
      answered(await grpcJs(target, "midflight", asked), 903, true);
      await stillExact("grpc-js midflight");
    });
    await t.step("grpc-js on Node.js: 500 sequential calls on each of three connections", async () => {
      answered(await grpcJs(target, "sequential", asked), 1500);
      await stillExact("grpc-js sequential");
    });
    await t.step("grpc-js on Node.js: the client process exits with 300 calls in flight", async () => {
      await grpcJs(target, "killed", asked);
      await stillExact("grpc-js killed");
    });
    await t.step("grpcio: the same patterns", async () => {
      answered(await grpcio(target, "rounds", asked), 1000);
      answered(await grpcio(target, "midflight", asked), 903, true);
      answered(await grpcio(target, "sequential", asked), 1500);
      await stillExact("grpcio");
    });
    await t.step("grpcio: health says SERVING, reflection v1 and v1alpha list the services", async () => {
      const run = await grpcio(target, "services", []);
      assert.equal(run.health, 1);
      for (const version of ["v1", "v1alpha"]) {
        for (const name of ["UserService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]) {
          assert.ok(run.services?.[version].includes(name), `${name} in ${version}: ${run.services?.[version]}`);
        }
      }
    });
    await t.step("h2load (nghttp2): 5,000 calls over 50 connections, 20 in flight on each", async () => {
      const body = await Deno.makeTempFile();
      await Deno.writeFile(body, grpcMessage(users[0]));
      const output = await new Deno.Command("h2load", {
        args: [
          ...["-n", "5000", "-c", "50", "-m", "20", "-d", body],
          ...["-H", "content-type: application/grpc", "-H", "te: trailers"],
          `http://${target}/UserService/UserStats`,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output().catch((error) => assert.fail(`h2load (Debian's nghttp2-client) cannot run: ${error}`));
      await Deno.remove(body);
      const text = new TextDecoder().decode(output.stdout);
      assert.match(text, /requests: 5000 total, 5000 started, 5000 done, 5000 succeeded/, text);
      await stillExact("h2load");
    });
    await t.step("raw sockets: garbage, a broken preface, an HTTP/1 request", async () => {
      const random = seededRandom(5);
      const garbage = () => Uint8Array.from({ length: 4096 }, () => Math.floor(random() * 256));
      const afterPreface = await rawConnection(ports.grpc, [PREFACE, encodeSettings(new Map()), garbage()]);
      assert.ok(goAwayCode(afterPreface) !== undefined, "garbage after the preface is answered with GOAWAY");
      const noPreface = await rawConnection(ports.grpc, [garbage()]);
      assert.equal(goAwayCode(noPreface), ErrorCode.PROTOCOL_ERROR);
      const http1 = await Deno.connect({ hostname: "127.0.0.1", port: ports.grpc });
      await http1.write(new TextEncoder().encode("GET / HTTP/1.1\r\nhost: localhost\r\n\r\n"));
      const reply = await new Response(http1.readable).text();
      assert.match(reply, /^HTTP\/1\.1 505 HTTP Version Not Supported\r\n[\s\S]*This port serves gRPC/);
      await stillExact("garbage");
    });
    await t.step("raw sockets: the client's GOAWAY with calls in flight; they are still answered", async () => {
      const frames = await rawConnection(ports.grpc, [
        PREFACE,
        encodeSettings(new Map()),
        ...request(1, users[1]),
        ...request(3, users[2]),
        encodeGoAway(3, ErrorCode.NO_ERROR, "client leaving"),
      ]);
      const ended = frames.filter((f) => f.type === FrameType.HEADERS && f.flags & Flag.END_STREAM).map((f) =>
        f.streamId
      );
      assert.deepEqual(ended.sort(), [1, 3]);
      assert.ok(decodeSettings(frames[0].payload).length > 0, "the server's SETTINGS come first");
      await stillExact("client GOAWAY");
    });
    await t.step("raw sockets: 3,000 streams opened and reset at once (rapid reset)", async () => {
      const flood: Uint8Array[] = [PREFACE, encodeSettings(new Map())];
      for (let id = 1; id < 6000; id += 2) {
        flood.push(encodeFrame(FrameType.HEADERS, Flag.END_HEADERS, id, REQUEST_HEADERS));
        flood.push(encodeRstStream(id, ErrorCode.CANCEL));
      }
      const frames = await rawConnection(ports.grpc, flood);
      const code = goAwayCode(frames);
      assert.ok(code === undefined || code === ErrorCode.ENHANCE_YOUR_CALM, `GOAWAY ${code}`);
      await stillExact("rapid reset");
    });
    await t.step(
      "raw sockets: a header block of endless empty CONTINUATION frames; unfinished messages past the window",
      async () => {
        const headers = encodeFrame(FrameType.HEADERS, 0, 1, REQUEST_HEADERS);
        const continuations = Array.from({ length: 10_000 }, () => encodeFrame(FrameType.CONTINUATION, 0, 1));
        const continued = await rawConnection(ports.grpc, [
          PREFACE,
          encodeSettings(new Map()),
          headers,
          ...continuations,
        ]);
        assert.equal(goAwayCode(continued), ErrorCode.ENHANCE_YOUR_CALM);
        // Each stream sends most of a 60,000-byte message and never the rest: together more than the connection's window.
        const unfinished: Uint8Array[] = [PREFACE, encodeSettings(new Map())];
        for (let id = 1; id <= 41; id += 2) {
          unfinished.push(encodeFrame(FrameType.HEADERS, Flag.END_HEADERS, id, REQUEST_HEADERS));
          unfinished.push(encodeFrame(FrameType.DATA, 0, id, Uint8Array.of(0, 0, 0, 0xea, 0x60)));
          for (let i = 0; i < 5; i++) unfinished.push(encodeFrame(FrameType.DATA, 0, id, new Uint8Array(11_000)));
        }
        assert.equal(goAwayCode(await rawConnection(ports.grpc, unfinished)), ErrorCode.FLOW_CONTROL_ERROR);
        await stillExact("floods");
      },
    );
    await t.step("raw sockets: 2,000 connections opened, sent a call and closed at once", async () => {
      for (let batch = 0; batch < 20; batch++) {
        await Promise.all(Array.from({ length: 100 }, (_, i) =>
          rawConnection(
            ports.grpc,
            [PREFACE, encodeSettings(new Map()), ...request(1, users[i % users.length])],
            true,
          )));
      }
      await stillExact("2,000 connections");
    });
    await t.step("raw sockets: a connection that never speaks is closed by the node", async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: ports.grpc });
      const started = Date.now();
      const frames = await (async () => {
        const decoder = new FrameDecoder(1 << 24);
        const buffer = new Uint8Array(4096);
        const seen: Frame[] = [];
        const deadline = setTimeout(() => conn.close(), 30_000);
        try {
          for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
            decoder.push(buffer.subarray(0, n));
            for (let frame = decoder.next(); frame; frame = decoder.next()) seen.push(frame);
          }
        } finally {
          clearTimeout(deadline);
        }
        return seen;
      })();
      conn.close();
      assert.equal(goAwayCode(frames), ErrorCode.SETTINGS_TIMEOUT, `closed after ${Date.now() - started} ms`);
      await stillExact("a silent connection");
    });
  });
});
