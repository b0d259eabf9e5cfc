/**
 * The live placement page, `GET /` on every node's management port: one
 * self-contained HTML document (no build step, nothing loaded from elsewhere)
 * that polls `/cluster/placement` every second and redraws the members, a
 * grid of every shard coloured by its home, co-location, moves in flight, the
 * last rebalances, and events/s and lag per node.
 *
 * @module
 */

import { compactRanges } from "./shard_ranges.ts";

/** How often the page asks for the placement, in milliseconds. */
export const PAGE_POLL_MS = 1000;

const STYLE = `
:root { font-family: system-ui, sans-serif; color: #1d2330; background: #f6f7f9; }
body { margin: 1.5rem; }
h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
h2 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
.sub { color: #5a6272; font-size: .9rem; }
.panels { display: flex; gap: 1.5rem; flex-wrap: wrap; align-items: flex-start; }
.panel { background: #fff; border: 1px solid #dde1e8; border-radius: 8px; padding: .8rem 1rem; }
table { border-collapse: collapse; font-size: .88rem; }
td, th { padding: .2rem .6rem; text-align: left; border-bottom: 1px solid #eef0f4; }
th { color: #5a6272; font-weight: 600; }
.swatch { display: inline-block; width: .8rem; height: .8rem; border-radius: 2px; vertical-align: middle; margin-right: .3rem; }
#grid { display: grid; grid-template-columns: repeat(16, 1.6rem); gap: 3px; }
.shard { width: 1.6rem; height: 1.6rem; border-radius: 3px; font-size: .6rem; color: #fff; display: flex;
  align-items: center; justify-content: center; background: #c3c8d1; }
.shard.away { outline: 2px dashed #d33; outline-offset: -2px; }
.shard.moving { background-image: repeating-linear-gradient(45deg, rgba(255,255,255,.55) 0 3px, transparent 3px 7px); }
.big { font-size: 1.6rem; font-weight: 600; }
.error { color: #b3261e; }
ul { margin: 0; padding-left: 1.1rem; font-size: .85rem; max-width: 60rem; }
`;

const SCRIPT = `
const palette = ["#3366cc", "#dc8a12", "#109618", "#990099", "#0099c6", "#dd4477", "#66aa00", "#b82e2e", "#316395", "#994499"];
const colours = new Map();
const previous = new Map();
const $ = (id) => document.getElementById(id);
function colour(node) {
  if (!colours.has(node)) colours.set(node, palette[colours.size % palette.length]);
  return colours.get(node);
}
function text(tag, value, cls) {
  const e = document.createElement(tag);
  e.textContent = value;
  if (cls) e.className = cls;
  return e;
}
function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.append(typeof c === "string" ? text("td", c) : c);
  return tr;
}
// "43-63,107" rather than 42 numbers: a rebalance line stays readable. The CLI's own function, as source.
${compactRanges.toString()}
function render(p) {
  $("self").textContent = p.self;
  $("updated").textContent = new Date(p.at).toLocaleTimeString();
  $("status").textContent = "";
  const nodes = [...p.nodes].sort((a, b) => a.node.localeCompare(b.node, undefined, { numeric: true }));
  for (const n of nodes) colour(n.node);
  const members = $("members");
  members.replaceChildren(row(["", "member", "status", "shards", "entities", "events/s", "local", "lag"].map((h) => text("th", h))));
  for (const n of nodes) {
    const swatch = document.createElement("td");
    const s = text("span", "", "swatch");
    s.style.background = colour(n.node);
    swatch.append(s);
    const last = previous.get(n.node);
    const rate = last && n.events !== null && last.events !== null && p.at > last.at
      ? Math.round((n.events - last.events) / ((p.at - last.at) / 1000)) : null;
    previous.set(n.node, { events: n.events, at: p.at });
    const roles = [n.node === p.oldest ? "coordinator" : "", n.node === p.self ? "this node" : ""].filter(Boolean);
    const tr = row([swatch, n.node + (roles.length ? " (" + roles.join(", ") + ")" : ""), n.status +
      (p.unreachable.includes(n.node) ? ", unreachable" : ""), String(n.shards.length), String(n.entities),
      rate === null ? "–" : String(rate), n.events ? Math.round(100 * n.local / n.events) + "%" : "–",
      n.lag === null ? "–" : String(n.lag)]);
    tr.dataset.node = n.node;
    tr.dataset.status = n.status;
    tr.dataset.shards = String(n.shards.length);
    if (n.error) tr.append(text("td", n.error, "error"));
    members.append(tr);
  }
  const home = new Map();
  const consumer = new Map();
  for (const n of nodes) {
    for (const s of n.shards) home.set(s, n.node);
    for (const s of n.consumedPartitions ?? []) consumer.set(s, n.node);
  }
  const moving = new Map((p.coordinator?.movesInFlight ?? []).map((m) => [m.shard, m]));
  const grid = $("grid");
  grid.replaceChildren();
  for (let s = 0; s < p.shardCount; s++) {
    const cell = text("div", String(s), "shard");
    const at = home.get(s);
    if (at) {
      cell.style.background = colour(at);
      cell.dataset.home = at;
      if (consumer.has(s) && consumer.get(s) !== at) cell.classList.add("away");
    }
    const move = moving.get(s);
    if (move) cell.classList.add("moving");
    cell.title = "shard " + s + (at ? " on " + at : " (no home)") + (consumer.has(s) ? ", partition consumed by " +
      consumer.get(s) : "") + (move ? ", moving " + (move.from ?? "new") + " → " + move.to : "");
    grid.append(cell);
  }
  $("colocation").textContent = p.colocated === null ? "unknown" :
    p.hosted ? Math.round(100 * p.colocated / p.hosted) + "%" : "–";
  $("colocation-detail").textContent = p.colocated === null ? "a node does not report the partitions it consumes" :
    p.colocated + " of " + p.hosted + " hosted shards sit with their partition's consumer";
  $("hosted").textContent = p.hosted + " / " + p.shardCount;
  const inFlight = $("moves");
  inFlight.replaceChildren(...(p.coordinator?.movesInFlight ?? []).map((m) =>
    text("li", "shard " + m.shard + ": " + (m.from ?? "new") + " → " + m.to + " (" + m.phase + ")")));
  if (!inFlight.children.length) inFlight.append(text("li", "none"));
  const rebalances = $("rebalances");
  rebalances.replaceChildren(...[...(p.coordinator?.rebalances ?? [])].reverse().map((r) => {
    const groups = new Map();
    for (const m of r.moves) {
      const key = (m.from ?? "new") + " → " + m.to;
      groups.set(key, [...(groups.get(key) ?? []), m.shard]);
    }
    const li = text("li", new Date(r.startedAt).toLocaleTimeString() + ": " + r.moves.length + " shards, " +
      [...groups].map(([k, v]) => k + " [" + compactRanges(v) + "]").join("; ") +
      (r.completedMs === undefined ? ", in progress" : ", done in " + r.completedMs + " ms"));
    li.className = "rebalance";
    return li;
  }));
  if (!rebalances.children.length) rebalances.append(text("li", "none seen by this coordinator"));
}
async function poll() {
  try {
    const response = await fetch("/cluster/placement", { cache: "no-store" });
    if (!response.ok) throw new Error("the node answered " + response.status);
    render(await response.json());
  } catch (error) {
    $("status").textContent = "cannot read the placement: " + error.message + " (retrying)";
  }
}
poll();
setInterval(poll, ${PAGE_POLL_MS});
`;

const HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>usershard: shard placement</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>${STYLE}</style>
</head>
<body>
<h1>usershard: where every shard lives</h1>
<div class="sub">as seen from <span id="self">…</span>, updated <span id="updated">…</span>
<span id="status" class="error"></span></div>
<div class="panels">
<div class="panel"><h2>Members</h2><table id="members"></table></div>
<div class="panel"><h2>Co-location</h2><div class="big" id="colocation">…</div>
<div class="sub" id="colocation-detail"></div><h2>Shards hosted</h2><div class="big" id="hosted">…</div></div>
</div>
<h2>Shards, coloured by their home (dashed: not with its partition's consumer; striped: moving)</h2>
<div class="panel"><div id="grid"></div></div>
<div class="panels">
<div class="panel"><h2>Moves in flight</h2><ul id="moves"></ul></div>
<div class="panel"><h2>Last rebalances</h2><ul id="rebalances"></ul></div>
</div>
<script>${SCRIPT}</script>
</body>
</html>
`;

/** The page, as `GET /` answers it. */
export function placementPage(): Response {
  return new Response(HTML, {
    headers: { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" },
  });
}
