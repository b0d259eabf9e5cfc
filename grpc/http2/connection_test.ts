import assert from "node:assert/strict";
import {
  type ConnectionEnd,
  type ConnectionLimits,
  DEFAULT_LIMITS,
  Http2Connection,
  StreamRefusedError,
} from "./connection.ts";
import {
  decodeSettings,
  encodeFrame,
  encodeGoAway,
  encodePing,
  encodeRstStream,
  encodeSettings,
  encodeWindowUpdate,
  ErrorCode,
  Flag,
  type Frame,
  FrameDecoder,
  FrameType,
  PREFACE,
  Setting,
  uint32,
} from "./frame.ts";
import { encodeHeaders, type HeaderField, HpackDecoder } from "./hpack.ts";
import type { Http2Stream } from "./stream.ts";

const REQUEST: HeaderField[] = [
  [":method", "POST"],
  [":scheme", "http"],
  [":path", "/UserService/UserStats"],
  [":authority", "localhost"],
  ["content-type", "application/grpc"],
  ["te", "trailers"],
];

/** A server connection driven frame by frame, as h2spec drives one, with what it answered. */
class ServerUnderTest {
  readonly connection: Http2Connection;
  readonly streams: Http2Stream[] = [];
  #end: ConnectionEnd | undefined;
  now = 0;
  readonly #decoder = new FrameDecoder(1 << 24);
  readonly #hpack = new HpackDecoder(4096, 1 << 20);

  constructor(limits: Partial<ConnectionLimits> = {}, handshake = true) {
    this.connection = new Http2Connection("server", {
      writable: () => {},
      stream: (stream) => this.streams.push(stream),
      closed: (end) => (this.#end = end),
    }, { ...DEFAULT_LIMITS, ...limits });
    this.connection.start(this.now);
    if (handshake) {
      this.send(PREFACE, encodeSettings(new Map()));
      this.frames();
    }
  }

  /** How the connection ended, if it has. */
  get end(): ConnectionEnd | undefined {
    return this.#end;
  }

  /** The same, read afresh (where a test already saw it undefined). */
  ended(): ConnectionEnd | undefined {
    return this.#end;
  }

  send(...chunks: Uint8Array[]): void {
    for (const chunk of chunks) this.connection.receive(chunk, this.now);
  }

  /** Frames the server wrote since the last call. */
  frames(): Frame[] {
    const out = this.connection.takeOutput();
    if (out) this.#decoder.push(out);
    const frames: Frame[] = [];
    for (let frame = this.#decoder.next(); frame; frame = this.#decoder.next()) frames.push(frame);
    return frames;
  }

  /** The header lists of the HEADERS frames among `frames`. */
  headersOf(frames: Frame[]): HeaderField[][] {
    return frames.filter((f) => f.type === FrameType.HEADERS).map((f) => this.#hpack.decode(f.payload).headers);
  }

  /** The GOAWAY among the frames written, as [code, debug text]. */
  goAway(frames: Frame[] = this.frames()): [number, string] | undefined {
    const frame = frames.find((f) => f.type === FrameType.GOAWAY);
    return frame && [uint32(frame.payload, 4), new TextDecoder().decode(frame.payload.subarray(8))];
  }
}

const headersFrame = (id: number, headers: HeaderField[], flags: number = Flag.END_HEADERS) =>
  encodeFrame(FrameType.HEADERS, flags, id, encodeHeaders(headers));
const dataFrame = (id: number, bytes: number, flags: number = 0) =>
  encodeFrame(FrameType.DATA, flags, id, new Uint8Array(bytes));
const rsts = (frames: Frame[]) =>
  frames.filter((f) => f.type === FrameType.RST_STREAM).map((f) => [f.streamId, uint32(f.payload)]);

Deno.test("a server answers the preface with its SETTINGS and window, and acknowledges the client's", () => {
  const server = new ServerUnderTest({}, false);
  server.send(PREFACE, encodeSettings(new Map([[Setting.MAX_FRAME_SIZE, 32_768]])));
  const frames = server.frames();
  assert.deepEqual(frames.map((f) => [f.type, f.flags]), [
    [FrameType.SETTINGS, 0],
    [FrameType.WINDOW_UPDATE, 0],
    [FrameType.SETTINGS, Flag.ACK],
  ]);
  assert.deepEqual(new Map(decodeSettings(frames[0].payload)).get(Setting.MAX_CONCURRENT_STREAMS), 1000);
  assert.equal(server.end, undefined);
});

Deno.test("a request arrives as a stream; the answer goes out as HEADERS, DATA and trailers", async () => {
  const server = new ServerUnderTest();
  server.send(headersFrame(1, REQUEST), dataFrame(1, 5, Flag.END_STREAM));
  assert.equal(server.streams.length, 1);
  const [stream] = server.streams;
  assert.deepEqual(stream.headers, REQUEST);
  const body: Uint8Array[] = [];
  for await (const chunk of stream.body()) body.push(chunk);
  assert.deepEqual(body.map((c) => c.length), [5]);
  stream.respond([[":status", "200"], ["content-type", "application/grpc"]]);
  await stream.write(new Uint8Array(3));
  await stream.end([["grpc-status", "0"]]);
  const frames = server.frames();
  assert.deepEqual(frames.map((f) => [f.type, f.flags, f.streamId]), [
    [FrameType.HEADERS, Flag.END_HEADERS, 1],
    [FrameType.DATA, 0, 1],
    [FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1],
  ]);
  assert.deepEqual(server.headersOf(frames)[1], [["grpc-status", "0"]]);
  assert.equal(server.connection.openStreams, 0);
});

Deno.test("what ends a connection: each violation gets GOAWAY with its code, and nothing throws", () => {
  const cases: [string, (s: ServerUnderTest) => void, number][] = [
    ["a frame over 16 KiB", (s) => s.send(dataFrame(1, 16_385)), ErrorCode.FRAME_SIZE_ERROR],
    ["DATA on stream 0", (s) => s.send(dataFrame(0, 1)), ErrorCode.PROTOCOL_ERROR],
    ["DATA on a stream never opened", (s) => s.send(dataFrame(5, 1)), ErrorCode.PROTOCOL_ERROR],
    ["HEADERS on stream 0", (s) => s.send(headersFrame(0, REQUEST)), ErrorCode.PROTOCOL_ERROR],
    ["a client opening an even stream", (s) => s.send(headersFrame(2, REQUEST)), ErrorCode.PROTOCOL_ERROR],
    [
      "a header block interrupted",
      (s) => s.send(headersFrame(1, REQUEST, 0), encodePing(new Uint8Array(8), false)),
      ErrorCode.PROTOCOL_ERROR,
    ],
    [
      "CONTINUATION without HEADERS",
      (s) => s.send(encodeFrame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, new Uint8Array(1))),
      ErrorCode.PROTOCOL_ERROR,
    ],
    [
      "CONTINUATION frames past the header block limit",
      (s) => {
        s.send(headersFrame(1, REQUEST, 0));
        for (let i = 0; i < 10; i++) s.send(encodeFrame(FrameType.CONTINUATION, 0, 1, new Uint8Array(16_000)));
      },
      ErrorCode.ENHANCE_YOUR_CALM,
    ],
    [
      "a header block that is not HPACK",
      (s) => s.send(encodeFrame(FrameType.HEADERS, Flag.END_HEADERS, 1, Uint8Array.of(0x80))),
      ErrorCode.COMPRESSION_ERROR,
    ],
    ["SETTINGS on a stream", (s) => s.send(encodeFrame(FrameType.SETTINGS, 0, 1)), ErrorCode.PROTOCOL_ERROR],
    [
      "SETTINGS of 5 bytes",
      (s) => s.send(encodeFrame(FrameType.SETTINGS, 0, 0, new Uint8Array(5))),
      ErrorCode.FRAME_SIZE_ERROR,
    ],
    [
      "SETTINGS ACK with data",
      (s) => s.send(encodeFrame(FrameType.SETTINGS, Flag.ACK, 0, new Uint8Array(6))),
      ErrorCode.FRAME_SIZE_ERROR,
    ],
    ["ENABLE_PUSH 2", (s) => s.send(encodeSettings(new Map([[Setting.ENABLE_PUSH, 2]]))), ErrorCode.PROTOCOL_ERROR],
    [
      "a window above 2^31-1 in SETTINGS",
      (s) => s.send(encodeSettings(new Map([[Setting.INITIAL_WINDOW_SIZE, 2 ** 31]]))),
      ErrorCode.FLOW_CONTROL_ERROR,
    ],
    [
      "MAX_FRAME_SIZE under 16 KiB",
      (s) => s.send(encodeSettings(new Map([[Setting.MAX_FRAME_SIZE, 100]]))),
      ErrorCode.PROTOCOL_ERROR,
    ],
    [
      "PING of 7 bytes",
      (s) => s.send(encodeFrame(FrameType.PING, 0, 0, new Uint8Array(7))),
      ErrorCode.FRAME_SIZE_ERROR,
    ],
    ["PING on a stream", (s) => s.send(encodeFrame(FrameType.PING, 0, 1, new Uint8Array(8))), ErrorCode.PROTOCOL_ERROR],
    [
      "PUSH_PROMISE from a client",
      (s) => s.send(encodeFrame(FrameType.PUSH_PROMISE, 0, 1, new Uint8Array(4))),
      ErrorCode.PROTOCOL_ERROR,
    ],
    ["RST_STREAM on stream 0", (s) => s.send(encodeRstStream(0, 0)), ErrorCode.PROTOCOL_ERROR],
    ["RST_STREAM on a stream never opened", (s) => s.send(encodeRstStream(9, 0)), ErrorCode.PROTOCOL_ERROR],
    ["WINDOW_UPDATE of 0 on the connection", (s) => s.send(encodeWindowUpdate(0, 0)), ErrorCode.PROTOCOL_ERROR],
    [
      "the connection window past 2^31-1",
      (s) => s.send(encodeWindowUpdate(0, 2 ** 31 - 1)),
      ErrorCode.FLOW_CONTROL_ERROR,
    ],
    ["DATA past the connection window", (s) => {
      // Each stream stays inside its own 64 KiB window; together, unread, they pass the connection's 1 MiB.
      for (let id = 1; id <= 45; id += 2) {
        s.send(headersFrame(id, REQUEST));
        for (let i = 0; i < 3; i++) s.send(dataFrame(id, 16_384));
      }
    }, ErrorCode.FLOW_CONTROL_ERROR],
    ["padding as long as the frame", (s) => {
      s.send(headersFrame(1, REQUEST));
      s.send(encodeFrame(FrameType.DATA, Flag.PADDED, 1, Uint8Array.of(4, 0, 0, 0)));
    }, ErrorCode.PROTOCOL_ERROR],
  ];
  for (const [what, act, code] of cases) {
    const server = new ServerUnderTest();
    act(server);
    assert.deepEqual(server.goAway()?.[0], code, what);
    assert.equal(server.end?.code, code, what);
    // Once ended, nothing more is read or written.
    server.send(headersFrame(101, REQUEST));
    assert.deepEqual(server.frames(), [], what);
  }
});

Deno.test("what ends a stream only: RST_STREAM with its code, and the connection carries on", () => {
  const cases: [string, (s: ServerUnderTest) => void, [number, number]][] = [
    ["upper-case header names", (s) => s.send(headersFrame(1, [...REQUEST, ["X-Upper", "1"]])), [
      1,
      ErrorCode.PROTOCOL_ERROR,
    ]],
    ["no :path", (s) => s.send(headersFrame(1, REQUEST.filter(([n]) => n !== ":path"))), [1, ErrorCode.PROTOCOL_ERROR]],
    ["a connection header", (s) => s.send(headersFrame(1, [...REQUEST, ["connection", "close"]])), [
      1,
      ErrorCode.PROTOCOL_ERROR,
    ]],
    ["a pseudo-header after a regular one", (s) => s.send(headersFrame(1, [...REQUEST, [":method", "GET"]])), [
      1,
      ErrorCode.PROTOCOL_ERROR,
    ]],
    ["an unknown pseudo-header", (s) => s.send(headersFrame(1, [[":protocol", "x"], ...REQUEST])), [
      1,
      ErrorCode.PROTOCOL_ERROR,
    ]],
    [
      "a stream depending on itself",
      (s) => s.send(encodeFrame(FrameType.PRIORITY, 0, 1, Uint8Array.of(0, 0, 0, 1, 16))),
      [1, ErrorCode.PROTOCOL_ERROR],
    ],
    ["a PRIORITY of 4 bytes", (s) => s.send(encodeFrame(FrameType.PRIORITY, 0, 1, new Uint8Array(4))), [
      1,
      ErrorCode.FRAME_SIZE_ERROR,
    ]],
    ["DATA past the stream's window", (s) => {
      s.send(encodeSettings(new Map()), headersFrame(1, REQUEST));
      for (let i = 0; i < 4; i++) s.send(dataFrame(1, 16_384));
    }, [1, ErrorCode.FLOW_CONTROL_ERROR]],
    [
      "DATA after END_STREAM",
      (s) => s.send(headersFrame(1, REQUEST, Flag.END_HEADERS | Flag.END_STREAM), dataFrame(1, 1)),
      [1, ErrorCode.STREAM_CLOSED],
    ],
    ["trailers without END_STREAM", (s) => s.send(headersFrame(1, REQUEST), headersFrame(1, [["x", "y"]])), [
      1,
      ErrorCode.PROTOCOL_ERROR,
    ]],
    [
      "HEADERS reusing a closed stream's id",
      (s) => s.send(headersFrame(3, REQUEST), encodeRstStream(3, ErrorCode.CANCEL), headersFrame(1, REQUEST)),
      [1, ErrorCode.STREAM_CLOSED],
    ],
  ];
  for (const [what, act, rst] of cases) {
    const server = new ServerUnderTest();
    act(server);
    assert.deepEqual(rsts(server.frames()).at(-1), rst, what);
    assert.equal(server.end, undefined, what);
    server.send(headersFrame(101, REQUEST, Flag.END_HEADERS | Flag.END_STREAM));
    assert.equal(server.streams.at(-1)?.id, 101, `${what}: a later stream still opens`);
  }
});

Deno.test("a header list over the limit gets 431 and leaves the HPACK table in step", () => {
  const server = new ServerUnderTest({ maxHeaderListSize: 512 });
  server.send(headersFrame(1, [...REQUEST, ["x-big", "b".repeat(600)]], Flag.END_HEADERS | Flag.END_STREAM));
  const frames = server.frames();
  assert.deepEqual(server.headersOf(frames), [[[":status", "431"]]]);
  assert.equal(server.streams.length, 0);
  server.send(headersFrame(3, REQUEST));
  assert.equal(server.streams.length, 1);
});

Deno.test("an HTTP/1 request gets one plain 505 line; other garbage gets GOAWAY", () => {
  const http1 = new ServerUnderTest({}, false);
  http1.send(new TextEncoder().encode("GET / HTTP/1.1\r\nhost: x\r\n\r\n"));
  const reply = new TextDecoder().decode(http1.connection.takeOutput());
  assert.match(reply, /HTTP\/1\.1 505 HTTP Version Not Supported\r\n[\s\S]*This port serves gRPC/);
  assert.equal(http1.end?.code, ErrorCode.HTTP_1_1_REQUIRED);

  const garbage = new ServerUnderTest({}, false);
  garbage.send(Uint8Array.of(0, 1, 2, 3, 250, 251));
  assert.deepEqual(garbage.goAway()?.[0], ErrorCode.PROTOCOL_ERROR);

  const noSettings = new ServerUnderTest({}, false);
  noSettings.send(PREFACE, encodePing(new Uint8Array(8), false));
  assert.deepEqual(noSettings.goAway()?.[0], ErrorCode.PROTOCOL_ERROR);
});

Deno.test("a client reset aborts its stream; the application's late answer goes nowhere", async () => {
  const server = new ServerUnderTest();
  server.send(headersFrame(1, REQUEST), dataFrame(1, 10));
  const [stream] = server.streams;
  let aborted = false;
  stream.signal.addEventListener("abort", () => (aborted = true));
  server.send(encodeRstStream(1, ErrorCode.CANCEL));
  assert.ok(aborted);
  await assert.rejects(async () => {
    for await (const _ of stream.body()) { /* drain */ }
  }, /reset by the peer \(CANCEL\)/);
  server.frames();
  stream.respond([[":status", "200"]]);
  await assert.rejects(stream.write(new Uint8Array(1)));
  assert.deepEqual(server.frames(), []);
  assert.equal(server.end, undefined);
});

Deno.test("streams over the limit are refused; a peer that keeps resetting busy streams is cut off (rapid reset)", () => {
  const server = new ServerUnderTest({ maxConcurrentStreams: 4, maxRefusedStreams: 10 });
  for (let id = 1; id <= 9; id += 2) server.send(headersFrame(id, REQUEST));
  assert.deepEqual(rsts(server.frames()), [[9, ErrorCode.REFUSED_STREAM]]);
  // Resetting them does not free the application's work: the handlers still run, so new streams are refused.
  for (let id = 1; id <= 7; id += 2) server.send(encodeRstStream(id, ErrorCode.CANCEL));
  let id = 11;
  for (; id < 11 + 2 * 9; id += 2) server.send(headersFrame(id, REQUEST), encodeRstStream(id, ErrorCode.CANCEL));
  assert.equal(server.end, undefined);
  server.send(headersFrame(id, REQUEST));
  assert.deepEqual(server.goAway()?.[0], ErrorCode.ENHANCE_YOUR_CALM);
  assert.equal(server.streams.length, 4, "no handler beyond the limit ever started");
});

Deno.test("a stream whose handler finishes after a reset frees its place", () => {
  const server = new ServerUnderTest({ maxConcurrentStreams: 1 });
  server.send(headersFrame(1, REQUEST), encodeRstStream(1, ErrorCode.CANCEL));
  server.send(headersFrame(3, REQUEST));
  assert.deepEqual(rsts(server.frames()), [[3, ErrorCode.REFUSED_STREAM]]);
  server.streams[0].reset();
  server.send(headersFrame(5, REQUEST));
  assert.deepEqual(server.streams.map((s) => s.id), [1, 5]);
});

Deno.test("flow control: DATA waits for the client's window, and WINDOW_UPDATE lets it out", async () => {
  const server = new ServerUnderTest();
  server.send(encodeSettings(new Map([[Setting.INITIAL_WINDOW_SIZE, 10]])));
  server.send(headersFrame(1, REQUEST, Flag.END_HEADERS | Flag.END_STREAM));
  const [stream] = server.streams;
  stream.respond([[":status", "200"]]);
  let sent = false;
  const writing = stream.write(new Uint8Array(25)).then(() => (sent = true));
  const first = server.frames().filter((f) => f.type === FrameType.DATA);
  assert.deepEqual(first.map((f) => f.payload.length), [10]);
  assert.equal(sent, false);
  server.send(encodeWindowUpdate(1, 20));
  await writing;
  assert.deepEqual(server.frames().filter((f) => f.type === FrameType.DATA).map((f) => f.payload.length), [15]);
  // A lower initial window makes the stream's window negative; it waits until it is positive again.
  stream.end([["grpc-status", "0"]]);
  assert.equal(server.headersOf(server.frames()).length, 1);
});

Deno.test("the client's GOAWAY lets streams in flight finish, then the connection ends", () => {
  const server = new ServerUnderTest();
  server.send(headersFrame(1, REQUEST, Flag.END_HEADERS | Flag.END_STREAM));
  server.send(encodeGoAway(1, ErrorCode.NO_ERROR, "client shutting down"));
  assert.equal(server.end, undefined);
  server.streams[0].respond([[":status", "200"], ["grpc-status", "0"]], true);
  assert.equal(server.ended()?.code, ErrorCode.NO_ERROR);
  assert.equal(server.ended()?.byPeer, true);

  const failing = new ServerUnderTest();
  failing.send(headersFrame(1, REQUEST));
  failing.send(encodeGoAway(1, ErrorCode.INTERNAL_ERROR, "client crashed"));
  assert.equal(failing.end?.code, ErrorCode.INTERNAL_ERROR);
  assert.ok(failing.streams[0].signal.aborted);
});

Deno.test("the server's own GOAWAY: streams in flight finish, new ones are refused", () => {
  const server = new ServerUnderTest();
  server.send(headersFrame(1, REQUEST, Flag.END_HEADERS | Flag.END_STREAM));
  server.connection.goAway("shutting down");
  assert.deepEqual(server.goAway(), [ErrorCode.NO_ERROR, "shutting down"]);
  server.send(headersFrame(3, REQUEST));
  assert.deepEqual(rsts(server.frames()), [[3, ErrorCode.REFUSED_STREAM]]);
  server.streams[0].respond([[":status", "200"], ["grpc-status", "0"]], true);
  assert.equal(server.end?.code, ErrorCode.NO_ERROR);

  const idle = new ServerUnderTest();
  idle.connection.goAway("shutting down");
  assert.equal(idle.end?.code, ErrorCode.NO_ERROR, "an idle connection ends at once");
});

Deno.test("keepalive: a silent peer is pinged, and one that does not answer is dropped (a half-open connection)", () => {
  const server = new ServerUnderTest({ keepaliveMs: 1000, keepaliveTimeoutMs: 500 });
  server.now = 900;
  server.connection.tick(server.now);
  assert.deepEqual(server.frames(), []);
  server.now = 1100;
  server.connection.tick(server.now);
  assert.deepEqual(server.frames().map((f) => f.type), [FrameType.PING]);
  server.now = 1500;
  server.send(encodePing(new Uint8Array(8), true));
  server.now = 2000;
  server.connection.tick(server.now);
  assert.equal(server.end, undefined, "the answer counts");
  server.now = 2600;
  server.connection.tick(server.now);
  server.now = 3200;
  server.connection.tick(server.now);
  assert.match(server.ended()?.reason ?? "", /did not answer a PING within 500 ms/);

  const silent = new ServerUnderTest({ handshakeTimeoutMs: 100 }, false);
  silent.now = 150;
  silent.connection.tick(silent.now);
  assert.deepEqual(silent.end?.code, ErrorCode.SETTINGS_TIMEOUT);
});

Deno.test("PING is answered with the same 8 bytes", () => {
  const server = new ServerUnderTest();
  server.send(encodePing(Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8), false));
  const [pong] = server.frames();
  assert.deepEqual([pong.type, pong.flags, [...pong.payload]], [FrameType.PING, Flag.ACK, [1, 2, 3, 4, 5, 6, 7, 8]]);
});

Deno.test("a client connection: trailers-only answers, and streams the server never saw fail as refused", async () => {
  let ended: ConnectionEnd | undefined;
  const client = new Http2Connection("client", {
    writable: () => {},
    closed: (end) => (ended = end),
  });
  client.start(0);
  const out = client.takeOutput()!;
  assert.deepEqual([...out.subarray(0, PREFACE.length)], [...PREFACE]);
  client.receive(encodeSettings(new Map([[Setting.MAX_CONCURRENT_STREAMS, 2]])), 0);
  const a = client.openStream(REQUEST, false);
  const b = client.openStream(REQUEST, false);
  assert.equal(client.canOpenStream, false);
  assert.throws(() => client.openStream(REQUEST, false), StreamRefusedError);
  client.receive(
    headersFrame(
      1,
      [[":status", "200"], ["content-type", "application/grpc"], ["grpc-status", "5"]],
      Flag.END_HEADERS | Flag.END_STREAM,
    ),
    0,
  );
  assert.deepEqual((await a.receivedHeaders()).find(([n]) => n === "grpc-status"), ["grpc-status", "5"]);
  client.receive(encodeGoAway(1, ErrorCode.NO_ERROR, "restarting"), 0);
  await assert.rejects(b.receivedHeaders(), /went away before it/);
  assert.equal(b.failure?.code, ErrorCode.REFUSED_STREAM);
  await a.end();
  assert.equal(ended?.byPeer, true);
});

Deno.test("a header block of endless empty CONTINUATION frames ends the connection (CVE-2024-27316)", () => {
  const server = new ServerUnderTest();
  server.send(encodeFrame(FrameType.HEADERS, 0, 1, encodeHeaders(REQUEST)));
  for (let i = 0; i < 100 && !server.end; i++) server.send(encodeFrame(FrameType.CONTINUATION, 0, 1));
  assert.deepEqual(server.goAway()?.[0], ErrorCode.ENHANCE_YOUR_CALM);
  assert.match(server.end?.reason ?? "", /in over 64 frames/);
});

Deno.test("the connection window comes back as the application releases what it read, not as it reads", async () => {
  const server = new ServerUnderTest({ connectionWindow: 65_535 });
  const connectionUpdates = () =>
    server.frames().filter((f) => f.type === FrameType.WINDOW_UPDATE && f.streamId === 0).map((f) => uint32(f.payload));
  server.send(headersFrame(1, REQUEST), dataFrame(1, 16_384), dataFrame(1, 16_384), dataFrame(1, 16_384));
  const reading = server.streams[0].body();
  assert.equal((await reading.next()).value?.length, 3 * 16_384);
  assert.deepEqual(connectionUpdates(), [], "read, but still held");
  server.streams[0].release(3 * 16_384);
  assert.deepEqual(connectionUpdates(), [3 * 16_384]);

  // Tiny frames cost the same window: a flood of 1-byte DATA stops when the window does, unread.
  const flooded = new ServerUnderTest({ connectionWindow: 65_535, streamWindow: 1 << 20 });
  flooded.send(headersFrame(1, REQUEST));
  for (let i = 0; i < 65_535; i++) flooded.send(dataFrame(1, 1));
  assert.equal(flooded.end, undefined);
  flooded.send(dataFrame(1, 1));
  assert.deepEqual(flooded.goAway()?.[0], ErrorCode.FLOW_CONTROL_ERROR);
});

Deno.test("a finished call gives back what its request held, read or not", () => {
  const server = new ServerUnderTest({ connectionWindow: 65_535 });
  server.send(headersFrame(1, REQUEST), dataFrame(1, 13_000), dataFrame(1, 13_000), dataFrame(1, 13_000));
  server.frames();
  server.streams[0].respond([[":status", "200"], ["grpc-status", "0"]], true);
  const frames = server.frames();
  assert.deepEqual(rsts(frames), [[1, ErrorCode.NO_ERROR]], "the client need not send the rest");
  assert.deepEqual(
    frames.filter((f) => f.type === FrameType.WINDOW_UPDATE && f.streamId === 0).map((f) => uint32(f.payload)),
    [39_000],
  );
});

Deno.test("RST_STREAM with NO_ERROR from a client cancels its call like any other reset", () => {
  const server = new ServerUnderTest();
  server.send(headersFrame(1, REQUEST, Flag.END_HEADERS | Flag.END_STREAM));
  server.send(encodeRstStream(1, ErrorCode.NO_ERROR));
  assert.ok(server.streams[0].signal.aborted);
  assert.equal(server.streams[0].failure?.code, ErrorCode.NO_ERROR);
});

Deno.test("a peer that reads nothing is dropped once what waits for it passes the limit", () => {
  const server = new ServerUnderTest({ maxUnwrittenBytes: 1000 });
  for (let i = 0; i < 100 && !server.end; i++) server.send(encodePing(new Uint8Array(8), false));
  assert.equal(server.end?.code, ErrorCode.ENHANCE_YOUR_CALM);
  assert.equal(server.connection.pendingOutput, 0, "what it did not read is dropped, not kept");
});

Deno.test("a client resets a stream whose DATA comes before the response's headers", () => {
  const client = new Http2Connection("client", { writable: () => {}, closed: () => {} });
  client.start(0);
  client.takeOutput();
  client.receive(encodeSettings(new Map()), 0);
  const stream = client.openStream(REQUEST, true);
  client.receive(dataFrame(1, 5), 0);
  assert.equal(stream.failure?.code, ErrorCode.PROTOCOL_ERROR);
  assert.equal(client.ended, false);
});

Deno.test("a request its application timed is reset once it has not ended in time; others are left alone", () => {
  const server = new ServerUnderTest();
  server.now = 1000;
  server.send(
    headersFrame(1, REQUEST),
    headersFrame(3, REQUEST),
    headersFrame(5, REQUEST, Flag.END_HEADERS | Flag.END_STREAM),
  );
  const [timed, untimed, finished] = server.streams;
  timed.requestTimeoutMs = finished.requestTimeoutMs = 500;
  server.frames();
  server.connection.tick(1400);
  assert.deepEqual(rsts(server.frames()), []);
  server.connection.tick(1600);
  assert.deepEqual(rsts(server.frames()), [[1, ErrorCode.CANCEL]]);
  assert.match(timed.failure?.message ?? "", /did not finish its request within 500 ms/);
  assert.equal(untimed.failure, undefined);
  assert.equal(finished.failure, undefined, "a request that ended in time is answered at leisure");
});
