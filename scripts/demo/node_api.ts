/**
 * What the demo reads of a node: its management endpoints, typed. Every read
 * gives `undefined` when the node does not answer (yet), for the caller to
 * poll again.
 *
 * @module
 */
import type { ShardsJson } from "../../commands/management_client.ts";
import type { CoordinatorView } from "../../cluster/sharding/coordinator_runner.ts";

/** The ports of one node. */
export interface NodePorts {
  readonly remoting: number;
  readonly mgmt: number;
  readonly grpc: number;
}

/** `GET /stats` of a node. */
export interface StatsJson {
  readonly events: number;
  readonly local: number;
  readonly malformed: number;
  readonly hostedShards: number;
}

/** How long one read may take. */
const READ_MS = 2000;

/** One node's management endpoints, over the demo's HTTP client. */
export class NodeApi {
  readonly ports: NodePorts;
  readonly #http: Deno.HttpClient;

  constructor(ports: NodePorts, http: Deno.HttpClient) {
    this.ports = ports;
    this.#http = http;
  }

  /** `http://127.0.0.1:<mgmt><path>`. */
  url(path: string): string {
    return `http://127.0.0.1:${this.ports.mgmt}${path}`;
  }

  /** Whether the node says it is ready: Up, and its region known to the coordinator. */
  async ready(): Promise<boolean> {
    try {
      const response = await fetch(this.url("/ready"), { client: this.#http, signal: AbortSignal.timeout(READ_MS) });
      await response.body?.cancel();
      return response.ok;
    } catch {
      return false; // not listening yet
    }
  }

  /** What the node processed. */
  stats(): Promise<StatsJson | undefined> {
    return this.#json<StatsJson>("/stats");
  }

  /** The shards the node hosts and the partitions it consumes, for the sharded type `group`. */
  shards(group: string): Promise<ShardsJson | undefined> {
    return this.#json<ShardsJson>(`/cluster/shards/${group}`);
  }

  /** What the coordinator on this node does; `{ running: false }` where it runs elsewhere. */
  coordinator(): Promise<CoordinatorView | { running: false } | undefined> {
    return this.#json<CoordinatorView | { running: false }>("/cluster/coordinator");
  }

  async #json<T>(path: string): Promise<T | undefined> {
    try {
      const response = await fetch(this.url(path), { client: this.#http, signal: AbortSignal.timeout(READ_MS) });
      if (response.ok) return await response.json() as T;
      await response.body?.cancel();
    } catch {
      // Not listening yet, or busy: the caller polls again.
    }
    return undefined;
  }
}
