/**
 * A node's Prometheus metrics, served as `GET /metrics` on the management
 * port: the one place that knows prom-client. The parts report through the
 * narrow observer interfaces they declare themselves (the consumer's
 * {@linkcode PipelineObserver}, sharding's {@linkcode HostingObserver}, the
 * changelog's {@linkcode RestoreObserver}, gRPC's {@linkcode QueryObserver},
 * remoting's {@linkcode RemotingObserver}), which {@linkcode NodeMetrics}
 * implements; what can be read when scraped (shards hosted, members, lag,
 * memory) is read then, through {@linkcode MetricsSources}.
 *
 * Each node has a registry of its own (tests run several nodes in one
 * process). Label values come from small fixed sets, or from the cluster's
 * members (`peer`, `member`); never from users.
 *
 * @module
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { MEMBER_STATUSES, type MemberStatus } from "../cluster/membership/members.ts";
import type { RemotingObserver } from "../cluster/remoting/remoting.ts";
import type { HostingObserver } from "../cluster/sharding/hosting.ts";
import type { QueryObserver } from "../grpc/user_service.ts";
import type { RestoreObserver, ShardRestore } from "../kafka/changelog.ts";
import type { PipelineObserver } from "../kafka/consumer.ts";
import type { MemoryObserver } from "./memory_reducer.ts";
import { MALFORMED_KINDS, type MalformedKind } from "../kafka/purchase.ts";

/** Buckets for a shard's move or restore: milliseconds when its changelog is small, a minute when it is huge. */
const MOVE_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** Buckets for a query: a millisecond answered here, up to the 10 s ask timeout when its shard moves. */
const QUERY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** How often the event-loop timer fires; its lateness is the lag. */
const EVENT_LOOP_TICK_MS = 100;

/** What a scrape reads from the running node. */
export interface MetricsSources {
  /** The members as this node sees them, those Removed lately included. */
  members(): readonly { readonly node: { readonly address: string }; readonly status: MemberStatus }[];
  /** The shards hosted here, with their users. */
  hostedShards(): readonly { readonly numEntities: number }[];
  /** Remoting asks waiting for an answer. */
  pendingAsks(): number;
  /** Consumer lag by partition of this node; `undefined` when Kafka did not say in time. */
  consumerLag(): Promise<ReadonlyMap<number, number> | undefined>;
}

/**
 * The worst event-loop lag over a sliding window, from the lateness of a
 * timer: a loop blocked for 300 ms makes the timer that was due meanwhile
 * fire up to 300 ms late. prom-client's own event-loop metrics rest on
 * `perf_hooks.monitorEventLoopDelay`, which under Deno does not see a
 * blocked loop, so this measures for itself.
 */
export class EventLoopLag {
  readonly #windowMs: number;
  #samples: { at: number; lagMs: number }[] = [];

  /** Keeps what was recorded in the last `windowMs`. */
  constructor(windowMs = 10_000) {
    this.#windowMs = windowMs;
  }

  /** A timer due at `dueAt` fired at `firedAt` (ms, any one clock). */
  record(dueAt: number, firedAt: number): void {
    this.#samples.push({ at: firedAt, lagMs: Math.max(0, firedAt - dueAt) });
  }

  /** The worst lag in the window ending at `now`, in seconds; 0 when nothing was late. */
  worstSeconds(now: number): number {
    this.#samples = this.#samples.filter((s) => now - s.at <= this.#windowMs);
    return this.#samples.reduce((worst, s) => Math.max(worst, s.lagMs), 0) / 1000;
  }
}

/** One node's registry and metrics. */
export class NodeMetrics
  implements PipelineObserver, HostingObserver, RestoreObserver, QueryObserver, RemotingObserver, MemoryObserver {
  /** The node's own registry (never prom-client's global one). */
  readonly registry: Registry = new Registry();
  readonly #eventLoop = new EventLoopLag();
  #eventLoopTimer: ReturnType<typeof setTimeout> | undefined;
  #sources: MetricsSources | undefined;

  readonly #events = new Counter({
    name: "usershard_events_applied_total",
    help: "Events of this node's partitions acknowledged by their shard, by where the shard was " +
      "(an event redelivered after a rebalance counts again).",
    labelNames: ["where"] as const,
    registers: [this.registry],
  });
  readonly #malformed = new Counter({
    name: "usershard_malformed_records_total",
    help: "Records of this node's partitions skipped as malformed, by why.",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });
  readonly #moves = new Counter({
    name: "usershard_shard_moves_total",
    help: "Shards started here (in) or stopped here (out) on the coordinator's command.",
    labelNames: ["direction"] as const,
    registers: [this.registry],
  });
  readonly #moveSeconds = new Histogram({
    name: "usershard_shard_move_duration_seconds",
    help: "From the coordinator's command to the shard ready here (in, its restore included) or stopped here (out).",
    labelNames: ["direction"] as const,
    buckets: MOVE_BUCKETS,
    registers: [this.registry],
  });
  readonly #idleCollections = new Counter({
    name: "usershard_idle_collections_total",
    help: "Full garbage collections the node ran when its events stopped after a burst (node/memory_reducer.ts).",
    registers: [this.registry],
  });
  readonly #idleFreed = new Counter({
    name: "usershard_idle_collection_freed_bytes_total",
    help: "Heap bytes those collections freed.",
    registers: [this.registry],
  });
  readonly #idleCollectionSeconds = new Counter({
    name: "usershard_idle_collection_seconds_total",
    help: "Time those collections paused the node.",
    registers: [this.registry],
  });
  readonly #restores = new Counter({
    name: "usershard_restores_total",
    help: "Shards restored here from their changelog partition.",
    registers: [this.registry],
  });
  readonly #restoredEntities = new Counter({
    name: "usershard_restored_entities_total",
    help: "Users restored here from changelog partitions.",
    registers: [this.registry],
  });
  readonly #restoredRecords = new Counter({
    name: "usershard_restore_records_read_total",
    help: "Changelog records read by restores here.",
    registers: [this.registry],
  });
  readonly #restoreSeconds = new Histogram({
    name: "usershard_restore_duration_seconds",
    help: "From opening a shard's changelog (fencing its previous writer) to its state rebuilt.",
    buckets: MOVE_BUCKETS,
    registers: [this.registry],
  });
  readonly #queries = new Counter({
    name: "usershard_queries_total",
    help: "gRPC UserStats queries answered, by status code and by where the user's shard was when asked.",
    labelNames: ["code", "where"] as const,
    registers: [this.registry],
  });
  readonly #querySeconds = new Histogram({
    name: "usershard_query_duration_seconds",
    help: "gRPC UserStats latency on this node, by where the user's shard was when asked.",
    labelNames: ["where"] as const,
    buckets: QUERY_BUCKETS,
    registers: [this.registry],
  });
  readonly #frames = new Counter({
    name: "usershard_remoting_frames_total",
    help: "Remoting frames to (out) and from (in) each peer, after the handshake.",
    labelNames: ["peer", "direction"] as const,
    registers: [this.registry],
  });
  readonly #bytes = new Counter({
    name: "usershard_remoting_bytes_total",
    help: "Remoting bytes on the wire to (out) and from (in) each peer, after the handshake.",
    labelNames: ["peer", "direction"] as const,
    registers: [this.registry],
  });
  /** By peer and direction: prom-client hashes labels on every call otherwise, and frames are many. */
  readonly #peerCounters = new Map<string, { frames: Counter.Internal; bytes: Counter.Internal }>();

  constructor() {
    for (const where of ["local", "forwarded"]) this.#events.inc({ where }, 0);
    for (const reason of MALFORMED_KINDS) this.#malformed.inc({ reason }, 0);
    for (const direction of ["in", "out"]) {
      this.#moves.inc({ direction }, 0);
      this.#moveSeconds.zero({ direction });
    }
    this.#scraped();
    this.#watchEventLoop();
  }

  #watchEventLoop(): void {
    const dueAt = performance.now() + EVENT_LOOP_TICK_MS;
    const id = setTimeout(() => {
      this.#eventLoop.record(dueAt, performance.now());
      this.#watchEventLoop();
    }, EVENT_LOOP_TICK_MS);
    // Watching must not keep a node's process alive once everything else has stopped.
    Deno.unrefTimer(id);
    this.#eventLoopTimer = id;
  }

  /** Where scrapes read the node's state from, once its parts exist. */
  readFrom(sources: MetricsSources): void {
    this.#sources = sources;
  }

  /** Counts events acknowledged by their shard. */
  applied(events: number, local: boolean): void {
    this.#events.inc({ where: local ? "local" : "forwarded" }, events);
  }

  /** Counts a record skipped as malformed. */
  malformed(kind: MalformedKind): void {
    this.#malformed.inc({ reason: kind });
  }

  /** Counts a shard moved in or out, and how long it took. */
  shardMoved(direction: "in" | "out", seconds: number): void {
    this.#moves.inc({ direction });
    this.#moveSeconds.observe({ direction }, seconds);
  }

  /** Counts a restore, its users and records, and how long it took. */
  restored(restore: ShardRestore): void {
    this.#restores.inc();
    this.#restoredEntities.inc(restore.entities);
    this.#restoredRecords.inc(restore.records);
    this.#restoreSeconds.observe(restore.seconds);
  }

  /** Counts a full collection the node ran when it went quiet, what it freed, and how long it took. */
  idleCollection(freedBytes: number, seconds: number): void {
    this.#idleCollections.inc();
    this.#idleFreed.inc(freedBytes);
    this.#idleCollectionSeconds.inc(seconds);
  }

  /** Counts a query by its outcome, and how long it took. */
  answered(code: string, where: "local" | "forwarded", seconds: number): void {
    this.#queries.inc({ code, where });
    this.#querySeconds.observe({ where }, seconds);
  }

  /** Counts a remoting frame and its bytes. */
  frame(peer: string, direction: "in" | "out", bytes: number): void {
    const key = `${direction} ${peer}`;
    let counters = this.#peerCounters.get(key);
    if (!counters) {
      counters = { frames: this.#frames.labels({ peer, direction }), bytes: this.#bytes.labels({ peer, direction }) };
      this.#peerCounters.set(key, counters);
    }
    counters.frames.inc();
    counters.bytes.inc(bytes);
  }

  /** The page in Prometheus's text format. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** `GET /metrics`. */
  async response(): Promise<Response> {
    return new Response(await this.text(), { headers: { "content-type": this.registry.contentType } });
  }

  /** Stops the event-loop timer. */
  close(): void {
    clearTimeout(this.#eventLoopTimer);
  }

  /** The metrics read when scraped. */
  #scraped(): void {
    const registers = [this.registry];
    const sources = () => this.#sources;
    new Gauge({
      name: "usershard_shards_hosted",
      help: "Shards hosted on this node (restoring ones included).",
      registers,
      collect() {
        const hosted = sources()?.hostedShards();
        if (hosted) this.set(hosted.length);
      },
    });
    new Gauge({
      name: "usershard_entities_hosted",
      help: "Users in the shards hosted on this node.",
      registers,
      collect() {
        const hosted = sources()?.hostedShards();
        if (hosted) this.set(hosted.reduce((sum, s) => sum + s.numEntities, 0));
      },
    });
    new Gauge({
      name: "usershard_consumer_lag_records",
      help: "Records of each partition this node consumes that the consumer group has not committed " +
        "(log end offset minus committed offset, read from Kafka when scraped; kept as they were when Kafka does " +
        "not answer in time).",
      labelNames: ["partition"] as const,
      registers,
      async collect() {
        const lag = await sources()?.consumerLag().catch(() => undefined);
        if (!lag) return;
        this.reset();
        for (const [partition, records] of lag) this.set({ partition: String(partition) }, records);
      },
    });
    new Gauge({
      name: "usershard_remoting_pending_asks",
      help: "Remoting asks sent to other nodes and not yet answered.",
      registers,
      collect() {
        const source = sources();
        if (source) this.set(source.pendingAsks());
      },
    });
    new Gauge({
      name: "usershard_member_status",
      help: "1 for each member's status as this node sees it, 0 for its other statuses.",
      labelNames: ["member", "status"] as const,
      registers,
      collect() {
        const members = sources()?.members();
        if (!members) return;
        // Members forgotten since the last scrape disappear rather than keep their last status.
        this.reset();
        for (const member of members) {
          for (const status of MEMBER_STATUSES) {
            this.set({ member: member.node.address, status }, member.status === status ? 1 : 0);
          }
        }
      },
    });
    new Gauge({
      name: "usershard_process_resident_memory_bytes",
      help: "Resident memory of this process.",
      registers,
      collect() {
        this.set(Deno.memoryUsage().rss);
      },
    });
    new Gauge({
      name: "usershard_process_heap_used_bytes",
      help: "JavaScript heap in use in this process.",
      registers,
      collect() {
        this.set(Deno.memoryUsage().heapUsed);
      },
    });
    const eventLoop = this.#eventLoop;
    new Gauge({
      name: "usershard_event_loop_lag_seconds",
      help: `Longest event-loop stall of the last 10 s, measured as the lateness of a ${EVENT_LOOP_TICK_MS} ms timer.`,
      registers,
      collect() {
        this.set(eventLoop.worstSeconds(performance.now()));
      },
    });
  }
}
