/**
 * `deno task bench`: runs every benchmark against the local broker and prints
 * one line per figure. Pass names to run only some (e.g. `deno task bench produce`).
 *
 * @module
 */
import { setUpLogging } from "../commands/logging.ts";
import { benchContext, deleteBenchTopics } from "./context.ts";
import { benchCoordinator } from "./coordinator.ts";
import { benchDurability } from "./durability.ts";
import { benchMembership } from "./membership.ts";
import { benchMemory } from "./memory.ts";
import { benchProduce } from "./produce.ts";
import { benchQuery } from "./query.ts";
import { benchSharding } from "./sharding.ts";

const benchmarks: Record<string, (context: ReturnType<typeof benchContext>) => Promise<void>> = {
  produce: benchProduce,
  membership: benchMembership,
  sharding: benchSharding,
  query: benchQuery,
  durability: benchDurability,
  memory: benchMemory,
  coordinator: benchCoordinator,
};

const chosen = Deno.args.length > 0 ? Deno.args : Object.keys(benchmarks);
const unknown = chosen.filter((name) => !(name in benchmarks));
if (unknown.length > 0) {
  console.error(`bench: unknown benchmark ${unknown.join(", ")} (known: ${Object.keys(benchmarks).join(", ")})`);
  Deno.exit(2);
}
await setUpLogging("warning");
const context = benchContext();
console.log(`usershard benchmarks (Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores)`);
try {
  for (const name of chosen) await benchmarks[name](context);
} finally {
  await deleteBenchTopics();
}
