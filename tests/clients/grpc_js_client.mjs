// A stock @grpc/grpc-js client on Node.js, made from proto/users.proto alone, driving one node
// with the connection patterns real services have. Prints one JSON object on standard output:
// {"ok": n, "failed": {code: n}, "answers": {id: {totalPurchases, amountSpent}}}.
//
//   node grpc_js_client.mjs HOST:PORT PROTO_FILE PATTERN USERS
//
// PATTERN: ask         each user once, on one client
//          rounds      5 rounds of 200 concurrent calls on one client, each round ending with close()
//          midflight   300 concurrent calls, half of them cancelled and the client closed while they are in
//                      flight, 3 times
//          sequential  500 sequential calls on each of 3 clients, each then closed
//          killed      300 concurrent calls, then the process exits with them in flight (its sockets close)
// USERS: comma-separated ids to ask for, in turn.
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { readFileSync } from "node:fs";

const [target, protoFile, pattern, userList] = process.argv.slice(2);
const users = userList.split(",");
const { UserService } = grpc.loadPackageDefinition(protoLoader.loadSync(protoFile, { longs: String, defaults: true }));

const result = { ok: 0, failed: {}, answers: {} };
// GRPC_TEST_CA: speak TLS, trusting the CA in that PEM file; GRPC_TEST_CERT and
// GRPC_TEST_KEY: present this client certificate (mutual TLS).
const pem = (name) => (process.env[name] ? readFileSync(process.env[name]) : null);
const credentials = process.env.GRPC_TEST_CA
  ? grpc.credentials.createSsl(pem("GRPC_TEST_CA"), pem("GRPC_TEST_KEY"), pem("GRPC_TEST_CERT"))
  : grpc.credentials.createInsecure();
const newClient = () => new UserService(target, credentials);

const cancels = [];

function call(client, id, cancellable = false) {
  return new Promise((resolve) => {
    const pending = client.UserStats({ id }, { deadline: Date.now() + 20_000 }, (error, response) => {
      if (error) {
        const name = grpc.status[error.code] ?? String(error.code);
        result.failed[name] = (result.failed[name] ?? 0) + 1;
      } else {
        result.ok++;
        result.answers[id] = {
          totalPurchases: Number(response.totalPurchases),
          amountSpent: Number(response.amountSpent),
        };
      }
      resolve();
    });
    if (cancellable) cancels.push(() => pending.cancel());
  });
}

const patterns = {
  async ask() {
    const client = newClient();
    for (const id of users) await call(client, id);
    client.close();
  },
  async rounds() {
    for (let round = 0; round < 5; round++) {
      const client = newClient();
      await Promise.all(Array.from({ length: 200 }, (_, i) => call(client, users[i % users.length])));
      client.close();
    }
  },
  async midflight() {
    for (let round = 0; round < 3; round++) {
      const client = newClient();
      // One call first, so that the connection is up when the burst and the close() come.
      await call(client, users[0]);
      const calls = Array.from({ length: 300 }, (_, i) => call(client, users[i % users.length], i % 2 === 0));
      await new Promise((resolve) => setTimeout(resolve, 2));
      for (const cancel of cancels.splice(0)) cancel();
      client.close();
      await Promise.all(calls);
    }
  },
  async killed() {
    const client = newClient();
    await call(client, users[0]);
    for (let i = 0; i < 300; i++) call(client, users[i % users.length]);
    await new Promise((resolve) => setTimeout(resolve, 3));
    console.log(JSON.stringify(result));
    process.exit(0);
  },
  async sequential() {
    for (let connection = 0; connection < 3; connection++) {
      const client = newClient();
      for (let i = 0; i < 500; i++) await call(client, users[i % users.length]);
      client.close();
    }
  },
};

if (!patterns[pattern]) {
  console.error(`unknown pattern ${pattern}; one of ${Object.keys(patterns).join(", ")}`);
  process.exit(2);
}
await patterns[pattern]();
console.log(JSON.stringify(result));
