import assert from "node:assert/strict";
import { handleManagement, json, type ManagementSource } from "./management.ts";

const self = { address: "127.0.0.1:2551", uid: 1 };
const source: ManagementSource = {
  snapshot: () => ({
    self,
    members: [{ node: self, status: "Up", upNumber: 1, management: "127.0.0.1:8551" }],
    removed: [],
    unreachable: [],
    leader: self,
    oldest: self,
  }),
  isReady: () => true,
  notReadyReason: () => "",
  routes: [(path) => path.startsWith("/users/") ? json({ id: path.slice(7) }) : undefined],
};

async function get(path: string, method = "GET"): Promise<{ status: number; body: string }> {
  const response = await handleManagement(new Request(`http://127.0.0.1:8551${path}`, { method }), source);
  return { status: response.status, body: await response.text() };
}

Deno.test("a bad percent-escape in the path is a 400 that says so, not a 500", async () => {
  const bad = await get("/users/%E0%A4%A");
  assert.equal(bad.status, 400);
  assert.deepEqual(JSON.parse(bad.body), { message: "the path /users/%E0%A4%A has a bad percent-escape" });
  assert.equal((await get("/cluster/members/%zz")).status, 400);
});

Deno.test("good escapes are decoded before routing; unknown paths are 404, writes 405", async () => {
  assert.deepEqual(JSON.parse((await get("/users/caf%C3%A9")).body), { id: "café" });
  assert.equal((await get("/cluster/members/127.0.0.1%3A2551")).status, 200);
  assert.equal((await get("/nowhere")).status, 404);
  assert.equal((await get("/cluster/members", "POST")).status, 405);
});
