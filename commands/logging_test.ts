import assert from "node:assert/strict";
import { configure, getLogger, type LogRecord, reset } from "@logtape/logtape";
import { UsageError } from "./flags.ts";
import { jsonLogLine, logFormatFlag } from "./logging.ts";

/** The records that `log` makes through logtape itself, so their shape is the real one. */
async function recordsOf(log: () => void): Promise<LogRecord[]> {
  const records: LogRecord[] = [];
  await configure({
    reset: true,
    sinks: { memory: (record) => records.push(record) },
    loggers: [
      { category: ["usershard"], lowestLevel: "trace", sinks: ["memory"] },
      { category: ["logtape", "meta"], lowestLevel: "warning" },
    ],
  });
  try {
    log();
  } finally {
    await reset();
  }
  return records;
}

Deno.test("logFormatFlag() takes text or json in any case and refuses anything else naming the choices", () => {
  assert.equal(logFormatFlag("text"), "text");
  assert.equal(logFormatFlag("JSON"), "json");
  assert.throws(() => logFormatFlag("yaml"), new UsageError("--log-format must be one of text, json, got 'yaml'"));
});

Deno.test("jsonLogLine(): one line, one object of time, level, logger, the message as in text and each property", async () => {
  const [record] = await recordsOf(() =>
    getLogger(["usershard", "producer"]).info("sent {sent} events to {topic}\nin {seconds} s", {
      sent: 300,
      topic: "user-events",
      seconds: "1.5",
    })
  );
  const line = jsonLogLine(record);
  assert.ok(line.endsWith("\n") && !line.slice(0, -1).includes("\n"), line);
  assert.deepEqual(JSON.parse(line), {
    "@timestamp": new Date(record.timestamp).toISOString(),
    level: "INFO",
    logger: "usershard.producer",
    // Strings bare, as the text format writes them, not JSON-quoted inside the message.
    message: "sent 300 events to user-events\nin 1.5 s",
    sent: 300,
    topic: "user-events",
    seconds: "1.5",
  });
  assert.match(JSON.parse(line)["@timestamp"], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
});

Deno.test("jsonLogLine(): a property named like a record field is kept under _NAME, not written over it", async () => {
  const [record] = await recordsOf(() =>
    getLogger(["usershard", "sharding"]).warning("registering failed: {message}", {
      message: "timed out",
      level: 3,
      logger: "kafkajs",
    })
  );
  const fields = JSON.parse(jsonLogLine(record));
  assert.equal(fields.level, "WARN");
  assert.equal(fields.logger, "usershard.sharding");
  assert.equal(fields.message, "registering failed: timed out");
  assert.deepEqual([fields._message, fields._level, fields._logger], ["timed out", 3, "kafkajs"]);
});
