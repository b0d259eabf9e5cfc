import assert from "node:assert/strict";
import { addressFromClientId, nodeClientId } from "./assignment.ts";

Deno.test("a node's Kafka client id names its address and reads back", () => {
  assert.equal(nodeClientId("127.0.0.1:2551"), "usershard-127.0.0.1-2551");
  assert.equal(addressFromClientId(nodeClientId("node-a.example:2552")), "node-a.example:2552");
  assert.equal(addressFromClientId("console-consumer"), undefined);
});
