/**
 * Transcripts of {@linkcode ConsumerProgress}, one scenario per file in
 * `testdata/consumer_progress/`. Each step is a line of input, `----`, and
 * what `ready()` hands out after it (`nothing` when nothing). Inputs:
 *
 *     time T                         the clock, in ms (0 at the start)
 *     assign P...                    this node's partitions after a rebalance
 *     located P run=R at=O           P starts at offset O
 *     locate-failed P run=R
 *     fetched P run=R from=F next=N [records=K]
 *                                    a fetch of P read [F, N), K records (N - F unless said)
 *     fetch-failed P run=R
 *     fetch-done                     every answer of the fetch is in
 *     delivered P run=R from=F       the sink acknowledged the batch from F
 *     refused P run=R from=F         the sink refused it
 *     committed P@O...               Kafka committed these
 *     commit-failed
 *     stop                           the node is stopping
 *
 * `REWRITE=1 deno test -A kafka/consumer_progress_test.ts` writes what the
 * code does now into the files, for review in the diff.
 */
import assert from "node:assert/strict";
import { ConsumerProgress, type Ready } from "./consumer_progress.ts";

const DIR = new URL("./testdata/consumer_progress/", import.meta.url);

function args(words: string[]): { positional: number[]; named: Map<string, number> } {
  const positional: number[] = [];
  const named = new Map<string, number>();
  for (const word of words) {
    const [name, value] = word.split("=");
    if (value === undefined) positional.push(Number(name));
    else named.set(name, Number(value));
  }
  return { positional, named };
}

function step(progress: ConsumerProgress, clock: { now: number }, line: string): void {
  const [command, ...rest] = line.trim().split(/\s+/);
  const { positional, named } = args(rest.filter((w) => !w.includes("@")));
  const p = positional[0];
  const run = named.get("run") ?? -1;
  const from = named.get("from") ?? -1;
  switch (command) {
    case "time":
      clock.now = p;
      return;
    case "assign":
      return progress.assign(positional);
    case "located":
      return void progress.located(p, run, named.get("at")!);
    case "locate-failed":
      return progress.locateFailed(p, run, clock.now);
    case "fetched":
      return progress.fetched(p, run, from, named.get("next")!, named.get("records") ?? named.get("next")! - from);
    case "fetch-failed":
      return progress.fetchFailed(p, run, clock.now);
    case "fetch-done":
      return progress.fetchDone();
    case "delivered":
      return progress.delivered(p, run, from);
    case "refused":
      return progress.refused(p, run, from, clock.now);
    case "committed":
      return progress.committed(rest.map((w) => {
        const [partition, offset] = w.split("@").map(Number);
        return { partition, offset };
      }));
    case "commit-failed":
      return progress.commitFailed(clock.now);
    case "stop":
      return progress.stopFetching();
    default:
      throw new Error(`unknown input: ${line}`);
  }
}

function show(ready: Ready): string {
  const lines = [
    ...ready.locate.map((l) => `locate ${l.partition} run=${l.run}`),
    ...ready.fetch.map((f) => `fetch ${f.partition}@${f.offset} run=${f.run}`),
    ...ready.deliver.map((d) => `deliver ${d.partition} [${d.from},${d.next}) run=${d.run}`),
    ...ready.commit.map((c) => `commit ${c.partition}@${c.offset}`),
  ];
  return lines.length > 0 ? lines.join("\n") : "nothing";
}

/** Runs one transcript; returns it as the code would write it. */
function replay(text: string): { expected: string; actual: string } {
  const progress = new ConsumerProgress();
  const clock = { now: 0 };
  const out: string[] = [];
  const blocks = text.trimEnd().split(/\n\s*\n/);
  for (const block of blocks) {
    const [input, expected] = block.split(/^----$/m);
    const inputs = input.split("\n").filter((l) => l.trim() !== "" && !l.startsWith("#"));
    for (const line of inputs) step(progress, clock, line);
    const actual = show(progress.ready(clock.now));
    out.push(`${input.trimEnd()}\n----\n${expected === undefined ? "" : actual}`);
  }
  return { expected: text.trimEnd(), actual: out.join("\n\n") };
}

for (const entry of [...Deno.readDirSync(DIR)].sort((a, b) => a.name.localeCompare(b.name))) {
  const name = entry.name.replace(/\.txt$/, "").replaceAll("_", " ");
  Deno.test(`consumer progress: ${name}`, () => {
    const file = new URL(entry.name, DIR);
    const { expected, actual } = replay(Deno.readTextFileSync(file));
    if (Deno.env.get("REWRITE")) {
      Deno.writeTextFileSync(file, actual + "\n");
      return;
    }
    assert.equal(actual, expected, `${entry.name}: what the code does now differs from the transcript`);
  });
}

Deno.test("a located answer says whether it was taken: not for a run that is over", () => {
  const progress = new ConsumerProgress();
  progress.assign([3]);
  const [first] = progress.ready(0).locate;
  progress.assign([]);
  progress.assign([3]);
  const [second] = progress.ready(0).locate;
  assert.notEqual(first.run, second.run, "revoked and given back: a new run");
  assert.equal(progress.located(3, first.run, 10), false, "the revoked run's answer");
  assert.equal(progress.located(3, second.run, 12), true);
  assert.equal(progress.located(3, second.run, 12), false, "answered already");
});
