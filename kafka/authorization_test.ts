import assert from "node:assert/strict";
import {
  aclSentence,
  asking,
  findNotAuthorized,
  KafkaNotAuthorized,
  kafkaPrincipal,
  notAuthorized,
  type Permission,
  refusal,
  RefusalLog,
} from "./authorization.ts";

/** An error shaped as @platformatic/kafka nests a refusal: the code on an inner error. */
function refused(code: string): Error {
  const inner = Object.assign(new Error("Authorization failed."), { apiId: code });
  return Object.assign(new Error("Received response with error"), { errors: [inner] });
}

const readTopic: Permission = { operation: "Read", resource: "Topic", name: "purchases" };
const readGroup: Permission = { operation: "Read", resource: "Group", name: "counters" };

Deno.test("the ACL sentence names the principal, the permission and the kafka-acls.sh flags that grant it", () => {
  assert.equal(
    aclSentence(readTopic, "TOPIC_AUTHORIZATION_FAILED", "User:alice"),
    "User:alice is not authorized to read topic purchases (TOPIC_AUTHORIZATION_FAILED); the ACL that allows it: " +
      "kafka-acls.sh --add --allow-principal User:alice --operation Read --topic purchases",
  );
  assert.equal(
    aclSentence(
      { operation: "Write", resource: "TransactionalId", name: "c-", prefixed: true },
      "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
    ),
    "not authorized to write transactional ids c-* (TRANSACTIONAL_ID_AUTHORIZATION_FAILED); the ACL that allows it: " +
      "kafka-acls.sh --add --allow-principal PRINCIPAL --operation Write --transactional-id c- " +
      "--resource-pattern-type prefixed",
  );
  assert.equal(
    aclSentence(undefined, "GROUP_AUTHORIZATION_FAILED", "User:alice"),
    "User:alice is not authorized (GROUP_AUTHORIZATION_FAILED): an ACL on the group is missing",
  );
});

Deno.test("Kafka's code picks, among what a request needs, the permission on the kind of resource it refused", () => {
  assert.deepEqual(notAuthorized(refused("GROUP_AUTHORIZATION_FAILED"), [readTopic, readGroup])?.permission, readGroup);
  assert.deepEqual(notAuthorized(refused("TOPIC_AUTHORIZATION_FAILED"), [readTopic, readGroup])?.permission, readTopic);
  assert.deepEqual(
    notAuthorized(refused("CLUSTER_AUTHORIZATION_FAILED"), [readTopic])?.permission,
    { operation: "Read", resource: "Cluster", name: "kafka-cluster" },
    "a cluster refusal of a request that does not name the cluster asks for the same operation on it",
  );
  assert.equal(notAuthorized(refused("UNKNOWN_TOPIC_OR_PARTITION"), [readTopic]), undefined);
  assert.equal(notAuthorized(new Error("connect ECONNREFUSED"), [readTopic]), undefined);
  assert.equal(refusal("TOPIC_AUTHORIZATION_FAILED", [readGroup]).permission, undefined, "no topic among the needs");
});

Deno.test("asking turns a refusal into KafkaNotAuthorized, found again under later wrappers, and said of a principal", async () => {
  const error = await asking([readTopic], () => Promise.reject(refused("TOPIC_AUTHORIZATION_FAILED"))).catch((e) => e);
  assert.ok(error instanceof KafkaNotAuthorized);
  const wrapped = new Error("could not start", { cause: new Error("join failed", { cause: error }) });
  assert.equal(findNotAuthorized(wrapped), error);
  assert.match(error.of("User:bob").message, /^User:bob is not authorized to read topic purchases/);
  const other = new Error("timeout");
  assert.equal(
    await asking([readTopic], () => Promise.reject(other)).catch((e) => e),
    other,
    "other errors pass as they are",
  );
});

Deno.test("the principal is the SASL user, else a client certificate's, else ANONYMOUS", () => {
  const password = () => "secret";
  assert.equal(
    kafkaPrincipal({ protocol: "SASL_SSL", sasl: { mechanism: "PLAIN", username: "carol", password } }),
    "User:carol",
  );
  assert.match(kafkaPrincipal({ protocol: "SSL", tls: { cert: "PEM", key: "PEM" } }), /client certificate/);
  assert.equal(kafkaPrincipal(undefined), "User:ANONYMOUS");
});

Deno.test("a refusal is logged once while it lasts, again after the repeat interval or when it changes, and its end once", () => {
  const log = new RefusalLog(30_000);
  assert.equal(log.refused("reading t", "no Read", 0), true);
  assert.equal(log.refused("reading t", "no Read", 1_000), false);
  assert.equal(log.refused("reading t", "no Describe", 2_000), true, "a new sentence is said");
  assert.equal(log.refused("reading t", "no Describe", 31_999), false);
  assert.equal(log.refused("reading t", "no Describe", 32_000), true, "said again after the interval");
  assert.equal(log.refused("committing", "no group Read", 32_000), true, "each kind of request on its own");
  assert.equal(log.allowed("reading t"), true);
  assert.equal(log.allowed("reading t"), false, "its end is said once");
  assert.equal(log.refused("reading t", "no Describe", 32_001), true, "a refusal after the end is said again");
});
