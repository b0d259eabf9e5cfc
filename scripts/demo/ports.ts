/**
 * The demo's ports: the walkthrough's own, or six from a base.
 *
 * @module
 */
import type { NodePorts } from "./node_api.ts";

/** The two nodes' ports: the walkthrough's (2551/2552, 8551/8552, 8081/8082), or six from `base`. */
export function nodePorts(base: number | undefined): [NodePorts, NodePorts] {
  if (base === undefined) {
    return [{ remoting: 2551, mgmt: 8551, grpc: 8081 }, { remoting: 2552, mgmt: 8552, grpc: 8082 }];
  }
  return [0, 1].map((i) => ({ remoting: base + i, mgmt: base + 2 + i, grpc: base + 4 + i })) as [NodePorts, NodePorts];
}

/** Whether nothing listens on `port` of 127.0.0.1 now. */
export function portFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) return false;
    throw error;
  }
}
