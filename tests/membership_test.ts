import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { type Envelope, EnvelopeSchema } from "../proto/gen/cluster_pb.ts";
import { compareAddresses } from "../cluster/remoting/node.ts";
import { PROTOCOL_VERSION } from "../cluster/remoting/remoting.ts";
import { runUsershard } from "./support/cli.ts";
import {
  addressOf,
  converged,
  eventually,
  members,
  nodePorts,
  startProcessor,
  statuses,
  type Stream,
  withNodes,
} from "./support/cluster.ts";
import type { RunningUsershard } from "./support/process.ts";
import { RawPeer } from "./support/raw_peer.ts";
import { BROKERS, withTopic } from "./support/kafka.ts";

Deno.test("three nodes started in any order converge to three Up members with one leader", async () => {
  await withNodes("members", async (started, stream) => {
    const [a, b, c] = nodePorts(3);
    const seeds = [a, b];
    // The non-seed first, then the second seed, then the first seed.
    started.push(startProcessor(c, seeds, stream));
    started.push(startProcessor(b, seeds, stream));
    started.push(startProcessor(a, seeds, stream));
    await converged([a, b, c], { [addressOf(a)]: "Up", [addressOf(b)]: "Up", [addressOf(c)]: "Up" });
    const views = await Promise.all([a, b, c].map(members));
    const lowest = [a, b, c].map(addressOf).sort(compareAddresses)[0];
    assert.deepEqual(views.map((v) => v?.leader), Array(3).fill(lowest), "the leader is the lowest address");
    assert.deepEqual(views.map((v) => v?.oldest), Array(3).fill(views[0]?.oldest));
    for (const node of [a, b, c]) {
      await eventually(`node ${addressOf(node)} ready`, async () => {
        const ready = await fetch(`http://127.0.0.1:${node.mgmt}/ready`);
        return ready.status === 200 && await ready.text() === "OK";
      });
    }
  });
});

Deno.test("without the first seed the others wait and say why; when it comes one cluster forms", async () => {
  await withNodes("members", async (started, stream) => {
    const [a, b, c] = nodePorts(3);
    const nodeB = startProcessor(b, [a, b], stream);
    const nodeC = startProcessor(c, [a, b], stream);
    started.push(nodeB, nodeC);
    await nodeC.waitForOutput(new RegExp(`not in a cluster yet: no seed reachable: ${addressOf(a)}; retrying`), 20_000);
    assert.match(nodeC.stderr, new RegExp(`${addressOf(b)} answered but is not in a cluster either`));
    assert.deepEqual(await statuses(b), {});
    const notReady = await fetch(`http://127.0.0.1:${b.mgmt}/ready`);
    assert.equal(notReady.status, 500);
    assert.match(await notReady.text(), /not in a cluster yet/);

    started.push(startProcessor(a, [a, b], stream));
    await converged([a, b, c], { [addressOf(a)]: "Up", [addressOf(b)]: "Up", [addressOf(c)]: "Up" });
    assert.doesNotMatch(nodeB.stderr + nodeC.stderr, /formed a new cluster/);
  });
});

/** Starts three nodes (the first two are the seeds) and waits until all see all three Up. */
async function threeUp(started: RunningUsershard[], stream: Stream) {
  const ports = nodePorts(3);
  const seeds = ports.slice(0, 2);
  const nodes = ports.map((p) => startProcessor(p, seeds, stream));
  started.push(...nodes);
  const all = Object.fromEntries(ports.map((p) => [addressOf(p), "Up"]));
  await converged(ports, all);
  return { ports, nodes, seeds, all };
}

Deno.test("a killed node is marked unreachable, then removed; restarted, it rejoins as a new incarnation", async () => {
  await withNodes("members", async (started, stream) => {
    const { ports: [a, b, c], nodes: [nodeA, nodeB, nodeC], seeds, all } = await threeUp(started, stream);
    const oldUid = (await members(a))!.members.find((m) => m.node === addressOf(c))!.nodeUid;

    nodeC.kill("SIGKILL");
    await eventually("A and B report C unreachable", async () => {
      const views = await Promise.all([a, b].map(members));
      return views.every((v) => v?.unreachable.some((u) => u.node === addressOf(c)));
    });
    await converged([a, b], { [addressOf(a)]: "Up", [addressOf(b)]: "Up" });
    for (const node of [nodeA, nodeB]) {
      assert.match(node.stderr, new RegExp(`member ${addressOf(c)} was downed`));
      assert.match(node.stderr, new RegExp(`member ${addressOf(c)} was removed`));
    }

    const again = startProcessor(c, seeds, stream);
    started.push(again);
    await converged([a, b, c], all);
    const newUid = (await members(a))!.members.find((m) => m.node === addressOf(c))!.nodeUid;
    assert.notEqual(newUid, oldUid);
  });
});

Deno.test("SIGTERM leaves gracefully: exit 0, and the others see it removed, never unreachable", async () => {
  await withNodes("members", async (started, stream) => {
    const { ports: [a, b, c], nodes: [nodeA, nodeB, nodeC] } = await threeUp(started, stream);

    // The leader and oldest leaves too: the rest must carry on without it.
    nodeA.kill("SIGTERM");
    const status = await nodeA.exited(20_000);
    assert.equal(status.code, 0, nodeA.stderr);
    assert.match(nodeA.stderr, /this node left the cluster/);
    await converged([b, c], { [addressOf(b)]: "Up", [addressOf(c)]: "Up" });
    for (const node of [nodeB, nodeC]) {
      assert.match(node.stderr, new RegExp(`member ${addressOf(a)} was removed`));
      assert.doesNotMatch(node.stderr, new RegExp(`member ${addressOf(a)} is unreachable`));
    }
    assert.equal((await members(c))?.leader, [b, c].map(addressOf).sort(compareAddresses)[0]);
  });
});

function handshake(clusterName: string, proof = new Uint8Array()): Envelope {
  return create(EnvelopeSchema, {
    body: {
      case: "handshake",
      value: {
        clusterName,
        protocolVersion: PROTOCOL_VERSION,
        from: { address: "127.0.0.1:1", uid: 1n },
        proof,
      },
    },
  });
}

Deno.test("nodes with the same secret work together; garbage, a huge length prefix, a wrong cluster name and a wrong secret are refused; the cluster stays healthy", async () => {
  await withNodes("members", async (started, stream) => {
    const [a, b, c] = nodePorts(3);
    const secret = ["--cluster-secret", "s3cret", "--cluster-name", "blue"];
    const node = startProcessor(a, [a], stream, secret);
    started.push(node);
    // A node with the same secret works with it: every frame between them is authenticated.
    started.push(startProcessor(b, [a], stream, secret));
    await converged([a, b], { [addressOf(a)]: "Up", [addressOf(b)]: "Up" });

    const garbage = await RawPeer.connect(a.remoting);
    assert.equal((await garbage.next())?.body.case, "challenge");
    await garbage.write(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert.ok(await garbage.closedByNode());
    garbage.close();

    const huge = await RawPeer.connect(a.remoting);
    await huge.next();
    await huge.write(new Uint8Array([0x7f, 0xff, 0xff, 0xff, 1, 2, 3]));
    assert.ok(await huge.closedByNode());
    huge.close();

    // Within the frame limit, but more than a handshake: refused as soon as its length is read.
    const bloated = await RawPeer.connect(a.remoting);
    await bloated.next();
    await bloated.write(new Uint8Array([0x00, 0x10, 0x00, 0x00]));
    await bloated.write(new Uint8Array(80 * 1024)).catch(() => {}); // the node may close mid-write
    assert.ok(await bloated.closedByNode());
    bloated.close();

    const wrongName = await RawPeer.connect(a.remoting);
    await wrongName.next();
    await wrongName.send(handshake("green"));
    const refusedName = await wrongName.next();
    assert.equal(refusedName?.body.case, "handshakeAck");
    if (refusedName?.body.case === "handshakeAck") {
      assert.equal(refusedName.body.value.accepted, false);
      assert.equal(refusedName.body.value.reason, "cluster name 'green' differs from 'blue'");
    }
    assert.ok(await wrongName.closedByNode());
    wrongName.close();

    const wrongSecret = await RawPeer.connect(a.remoting);
    await wrongSecret.next();
    await wrongSecret.send(handshake("blue", new Uint8Array(32)));
    const refusedSecret = await wrongSecret.next();
    assert.ok(refusedSecret?.body.case === "handshakeAck" && !refusedSecret.body.value.accepted);
    assert.equal(
      refusedSecret?.body.case === "handshakeAck" && refusedSecret.body.value.reason,
      "the shared secret does not match",
    );
    wrongSecret.close();

    // A real node with the wrong secret cannot join either, and says why.
    const intruder = startProcessor(c, [a], stream, ["--cluster-secret", "guess", "--cluster-name", "blue"]);
    started.push(intruder);
    await intruder.waitForOutput(new RegExp(`${addressOf(a)} refused this node: the shared secret does not match`));

    await node.waitForOutput(
      /closing connection from 127\.0\.0\.1:\d+: handshake failed: frame length 2147483647 exceeds the 65536-byte limit/,
    );
    assert.match(node.stderr, /refused 127\.0\.0\.1:1: cluster name 'green' differs from 'blue'/);
    assert.match(node.stderr, /handshake failed: frame length 1048576 exceeds the 65536-byte limit/);
    assert.deepEqual(await statuses(a), { [addressOf(a)]: "Up", [addressOf(b)]: "Up" });
    assert.equal((await fetch(`http://127.0.0.1:${a.mgmt}/alive`)).status, 200);
  });
});

Deno.test("process refuses a port in use and bad seeds with one line and a non-zero exit", () =>
  withTopic("members", async (topic) => {
    const [a] = nodePorts(1);
    const args = [
      "process",
      ...["--remoting", String(a.remoting), "--mgmt", String(a.mgmt), "--seeds", addressOf(a)],
      ...["--topic", topic, "--brokers", BROKERS.join(",")],
    ];
    const taken = Deno.listen({ hostname: "127.0.0.1", port: a.remoting });
    try {
      const inUse = await runUsershard(args);
      assert.equal(inUse.code, 1);
      assert.equal(
        inUse.stderr.trim().split("\n").at(-1),
        `usershard process: remoting port 127.0.0.1:${a.remoting} is already in use`,
      );
    } finally {
      taken.close();
    }
    // grpc-js has its own say on a taken port; only the program's line may reach the user.
    const grpcTaken = Deno.listen({ hostname: "127.0.0.1", port: a.grpc });
    try {
      const inUse = await runUsershard([...args, "--grpc", String(a.grpc)]);
      assert.equal(inUse.code, 1);
      const lines = inUse.stderr.trim().split("\n");
      assert.equal(lines.at(-1), `usershard process: gRPC port 127.0.0.1:${a.grpc} is already in use`);
      assert.deepEqual(lines.filter((line) => !/^\d{4}-\d\d-\d\dT/.test(line)), [lines.at(-1)], inUse.stderr);
    } finally {
      grpcTaken.close();
    }
    const cases: [string[], RegExp][] = [
      [["--seeds", "127.0.0.1"], /--seeds expects host:port entries, got '127\.0\.0\.1'/],
      [["--seeds", "a:1,b:99999"], /--seeds expects host:port entries, got 'b:99999'/],
      [["--remoting", "http"], /--remoting must be an integer from 1 to 65535, got 'http'/],
      [["--down-after", "soon"], /--down-after must be a duration above zero like 500ms, 5s or 1m, got 'soon'/],
      [["--ask-timeout", "0s"], /--ask-timeout must be a duration above zero/],
      [["--remoting", "9000", "--mgmt", "9000"], /--remoting and --mgmt must differ/],
    ];
    for (const [args, message] of cases) {
      const result = await runUsershard(["process", ...args]);
      assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
      assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
      assert.match(result.stderr, message);
    }
  }));
