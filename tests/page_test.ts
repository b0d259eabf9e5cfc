import assert from "node:assert/strict";
// deno.json's imports are what the program needs to run; the browser driver is this test's alone.
// deno-lint-ignore no-import-prefix
import puppeteer, { type Browser, type Page } from "npm:puppeteer-core@25.16.0";
import { addressOf, eventually, nodePorts, startProcessor, withNodes } from "./support/cluster.ts";
import { createTopic } from "./support/kafka.ts";

/** Debian's package, or whatever `CHROMIUM_BIN` names. */
const CHROMIUM = Deno.env.get("CHROMIUM_BIN") ?? "/usr/bin/chromium";

async function launch(): Promise<Browser> {
  try {
    await Deno.stat(CHROMIUM);
  } catch {
    throw new Error(`no Chromium at ${CHROMIUM}: install Debian's chromium package (CI does) or set CHROMIUM_BIN`);
  }
  return await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // No sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
}

/** What the page shows now: shards per member row, the grid's cells per home, co-location, rebalances. */
interface Shown {
  members: Record<string, { status: string; shards: number }>;
  cells: number;
  homes: Record<string, number>;
  colocation: string | null;
  rebalances: string[];
  marker?: string;
}

// Runs in the page; a string, since the test's own types are Deno's, not a browser's.
const READ_PAGE = `(() => {
  const rows = [...document.querySelectorAll("#members tr[data-node]")];
  const cells = [...document.querySelectorAll("#grid .shard")];
  const homes = {};
  for (const cell of cells) if (cell.dataset.home) homes[cell.dataset.home] = (homes[cell.dataset.home] ?? 0) + 1;
  return {
    members: Object.fromEntries(rows.map((r) => [r.dataset.node, { status: r.dataset.status, shards: Number(r.dataset.shards) }])),
    cells: cells.length,
    homes,
    colocation: document.getElementById("colocation").textContent,
    rebalances: [...document.querySelectorAll(".rebalance")].map((li) => li.textContent),
    marker: window.testMarker,
  };
})()`;

function shown(page: Page): Promise<Shown> {
  return page.evaluate(READ_PAGE) as Promise<Shown>;
}

Deno.test({
  name: "the live page shows 64 + 64 shards, then a third node's join and rebalance without a reload",
  // puppeteer keeps its own timers and pipes past close; the test checks what matters itself.
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withNodes("page", async (started, stream) => {
      await createTopic(stream.topic, 128);
      const [a, b, c] = nodePorts(3);
      started.push(startProcessor(a, [a, b], stream), startProcessor(b, [a, b], stream));
      const browser = await launch();
      const folder = await Deno.makeTempDir({ prefix: "usershard-page-" });
      try {
        const page = await browser.newPage();
        await page.setViewport({ width: 1200, height: 1000 });
        const requests: string[] = [];
        page.on("request", (request) => requests.push(request.url()));
        await eventually("node 1's management endpoint answering", async () => {
          const response = await fetch(`http://127.0.0.1:${a.mgmt}/alive`).catch(() => undefined);
          await response?.body?.cancel();
          return response?.ok;
        }, 30_000);
        await page.goto(`http://127.0.0.1:${a.mgmt}/`, { waitUntil: "load" });
        // Set once: a reload would lose it.
        await page.evaluate(`window.testMarker = "same page"`);
        const two = await eventually(
          "the page showing 64 + 64 shards, all co-located",
          async () => {
            const view = await shown(page);
            const counts = [addressOf(a), addressOf(b)].map((n) => view.homes[n]);
            return counts[0] === 64 && counts[1] === 64 && view.colocation === "100%" ? view : undefined;
          },
          90_000,
          async () => JSON.stringify(await shown(page)),
        );
        assert.equal(two.cells, 128);
        assert.deepEqual(Object.values(two.members).map((m) => m.status), ["Up", "Up"]);

        started.push(startProcessor(c, [a, b], stream));
        const three = await eventually(
          "the page showing the third node's shards and the rebalance",
          async () => {
            const view = await shown(page);
            const counts = [a, b, c].map((n) => view.homes[addressOf(n)] ?? 0);
            const settled = counts.every((n) => n >= 42 && n <= 43) && view.colocation === "100%";
            const rebalance = view.rebalances.some((r) => r.includes(addressOf(c)) && /done in \d+ ms/.test(r));
            return settled && rebalance && Object.keys(view.members).length === 3 ? view : undefined;
          },
          90_000,
          async () => JSON.stringify(await shown(page)),
        );
        assert.equal(three.marker, "same page", "the page updated itself, without a reload");
        assert.equal(three.members[addressOf(c)]?.status, "Up");
        const screenshot = `${folder}/placement.png`;
        await page.screenshot({ path: screenshot, fullPage: true });
        console.log(`screenshot of the page after the rebalance: ${screenshot}`);
        const elsewhere = requests.filter((url) => !url.startsWith(`http://127.0.0.1:${a.mgmt}/`));
        assert.deepEqual(elsewhere, [], "the page loads nothing but from its node");
      } finally {
        await browser.close();
      }
    }),
});
