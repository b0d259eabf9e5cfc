/**
 * A client and a server connection joined by an in-memory wire that cuts the
 * bytes into random pieces, under seeded randomness: requests of every size
 * (flow control), cancels from either side, GOAWAY, cuts of the wire at any
 * byte, and corrupted bytes. After each run every stream has settled: the
 * client has the server's exact answer or an error, the server holds no
 * stream, and no call threw.
 */
import assert from "node:assert/strict";
import { seededRandom } from "../../cluster/seeded_random.ts";
import { type ConnectionEnd, type ConnectionLimits, DEFAULT_LIMITS, Http2Connection } from "./connection.ts";
import { concatBytes } from "./frame.ts";
import type { HeaderField } from "./hpack.ts";
import type { Http2Stream } from "./stream.ts";

const SEEDS = 150;

const REQUEST: HeaderField[] = [[":method", "POST"], [":scheme", "http"], [":path", "/echo"], [
  ":authority",
  "sim",
]];

/** Lets pending promise chains run: the connection's readers and writers are async. */
async function settle(): Promise<void> {
  for (let i = 0; i < 30; i++) await Promise.resolve();
}

async function collect(stream: Http2Stream): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream.body()) {
    chunks.push(chunk);
    // A body as large as the connection window must not wait for its own end to give it back.
    stream.release(chunk.length);
  }
  return concatBytes(chunks);
}

async function run(seed: number): Promise<{ problems: string[]; answered: number; failed: number }> {
  const random = seededRandom(seed);
  const pick = (n: number) => Math.floor(random() * n);
  const problems: string[] = [];
  const limits: ConnectionLimits = {
    ...DEFAULT_LIMITS,
    streamWindow: [65_535, 16_384, 1 << 20][pick(3)],
    connectionWindow: [65_535, 1 << 20][pick(2)],
    maxConcurrentStreams: [3, 100][pick(2)],
  };
  let corrupted = false;
  let serverEnd: ConnectionEnd | undefined;
  let clientEnd: ConnectionEnd | undefined;
  const toServer: Uint8Array[] = [];
  const toClient: Uint8Array[] = [];
  const handlers: Promise<void>[] = [];

  const server = new Http2Connection("server", {
    writable: () => {},
    closed: (end) => (serverEnd = end),
    stream: (stream) => {
      handlers.push((async () => {
        try {
          const body = await collect(stream);
          await settle();
          if (random() < 0.1) return stream.reset();
          stream.respond([[":status", "200"]]);
          await stream.write(body.slice().reverse());
          await stream.end([["grpc-status", "0"], ["length", String(body.length)]]);
        } catch {
          if (!stream.localEnded || stream.failure) stream.reset();
        }
      })());
    },
  }, limits);
  const client = new Http2Connection("client", {
    writable: () => {},
    closed: (end) => (clientEnd = end),
  }, limits);
  server.start(0);
  client.start(0);

  const calls: { body: Uint8Array; outcome: Promise<Uint8Array | Error> }[] = [];
  const call = (size: number) => {
    let stream: Http2Stream;
    try {
      stream = client.openStream(REQUEST, false);
    } catch {
      return;
    }
    const body = new Uint8Array(size).map((_, i) => (i * 7 + seed) & 0xff);
    const outcome = (async () => {
      for (let at = 0; at < body.length; at += 10_000) await stream.write(body.subarray(at, at + 10_000));
      await stream.end();
      await stream.receivedHeaders();
      const answer = await collect(stream);
      if (stream.trailers.find(([n]) => n === "length")?.[1] !== String(size)) throw new Error("trailers missing");
      return answer;
    })().catch((error: Error) => error);
    calls.push({ body, outcome });
    if (random() < 0.1) setTimeout(() => stream.reset(), 0);
  };

  const move = (from: Http2Connection, wire: Uint8Array[], to: Http2Connection, now: number) => {
    const out = from.takeOutput();
    if (out) wire.push(out);
    if (wire.length === 0) return;
    const chunk = wire[0];
    const cut = 1 + pick(chunk.length);
    const piece = chunk.slice(0, cut);
    if (random() < 0.002) {
      piece[pick(piece.length)] ^= 0xff;
      corrupted = true;
    }
    wire[0] = chunk.subarray(cut);
    if (wire[0].length === 0) wire.shift();
    to.receive(piece, now);
  };

  for (let step = 0; step < 400; step++) {
    const now = step * 10;
    const action = random();
    if (action < 0.1) call([0, 10, 1000, 70_000, 200_000][pick(5)]);
    else if (action < 0.5) move(client, toServer, server, now);
    else if (action < 0.9) move(server, toClient, client, now);
    else if (action < 0.9005) {
      server.socketClosed("cut");
      client.socketClosed("cut");
    } else if (action < 0.901) server.goAway("leaving");
    await settle();
  }
  // The wire delivers everything that is left, in order.
  for (let round = 0; round < 2000 && !(serverEnd && clientEnd); round++) {
    const before = toServer.length + toClient.length;
    move(client, toServer, server, 10_000);
    move(server, toClient, client, 10_000);
    await settle();
    if (before === 0 && toServer.length + toClient.length === 0 && !client.pendingOutput && !server.pendingOutput) {
      break;
    }
  }
  // Anything still waiting now waits for bytes that will never come: the wire is cut.
  server.socketClosed("end of the run");
  client.socketClosed("end of the run");
  await Promise.all(handlers);
  const outcomes = await Promise.all(calls.map((c) => c.outcome));
  for (const [i, outcome] of outcomes.entries()) {
    if (outcome instanceof Error) continue;
    const expected = calls[i].body.slice().reverse();
    if (!corrupted && (outcome.length !== expected.length || outcome.some((b, j) => b !== expected[j]))) {
      problems.push(`seed ${seed}: call ${i} got a wrong answer (${outcome.length} bytes)`);
    }
  }
  if (server.openStreams !== 0) problems.push(`seed ${seed}: the server still holds ${server.openStreams} streams`);
  const failed = outcomes.filter((o) => o instanceof Error).length;
  return { problems, answered: outcomes.length - failed, failed };
}

Deno.test(`a client and a server over a wire that cuts, corrupts and drops: every stream settles (${SEEDS} seeds)`, async () => {
  const problems: string[] = [];
  let answered = 0;
  let failed = 0;
  for (let seed = 1; seed <= SEEDS; seed++) {
    const result = await run(seed);
    problems.push(...result.problems);
    answered += result.answered;
    failed += result.failed;
  }
  assert.deepEqual(problems, []);
  // The faults must leave most calls alone, or the run proves little about answers.
  assert.ok(answered > failed, `${answered} calls answered, ${failed} failed`);
  console.log(`${answered} calls answered exactly, ${failed} failed cleanly`);
});
