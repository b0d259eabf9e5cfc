/**
 * An HTTP/2 server over cleartext TCP with prior knowledge (h2c), as gRPC
 * clients speak it: it accepts connections, gives each its own state machine
 * and socket loop, and hands every request stream to one handler. A
 * connection that misbehaves ends alone; accept errors (out of file
 * descriptors, say) are logged and retried; nothing a client does reaches
 * the process.
 *
 * @module
 */
import { type ConnectionEnd, type ConnectionLimits, DEFAULT_LIMITS, Http2Connection } from "./connection.ts";
import { ErrorCode } from "./frame.ts";
import { ConnectionSocket } from "./socket.ts";
import type { Http2Stream } from "./stream.ts";

/** How a server is set up. */
export interface Http2ServerOptions {
  readonly hostname: string;
  readonly port: number;
  /** Called with each request stream; it must end or reset the stream, and must not throw. */
  readonly handler: (stream: Http2Stream) => void;
  readonly limits?: ConnectionLimits;
  /** Connections open at once; more are closed as they arrive. */
  readonly maxConnections?: number;
  /** A connection ended by an error (this side's or the peer's), for a log line. */
  readonly onConnectionError?: (peer: string, end: ConnectionEnd) => void;
  /** An accept that failed (the server retries), for a log line. */
  readonly onAcceptError?: (error: Error) => void;
  /** Serve over TLS (HTTP/2 negotiated by ALPN) with this PEM certificate chain and key. */
  readonly tls?: { readonly cert: string; readonly key: string };
}

/** Default for {@linkcode Http2ServerOptions.maxConnections}. */
export const DEFAULT_MAX_CONNECTIONS = 10_000;

const TICK_MS = 1_000;
const ACCEPT_RETRY_MS = 100;

/** A running HTTP/2 server. */
export class Http2Server {
  readonly #listener: Deno.Listener<Deno.TcpConn> | Deno.TlsListener;
  readonly #options: Http2ServerOptions;
  readonly #sockets = new Set<ConnectionSocket>();
  readonly #ticker: ReturnType<typeof setInterval>;
  #closing = false;
  readonly #accepting: Promise<void>;

  /** Binds and starts accepting; throws what `Deno.listen` throws (a port in use: `Deno.errors.AddrInUse`). */
  constructor(options: Http2ServerOptions) {
    this.#options = options;
    this.#listener = options.tls
      ? Deno.listenTls({ hostname: options.hostname, port: options.port, ...options.tls, alpnProtocols: ["h2"] })
      : Deno.listen({ hostname: options.hostname, port: options.port });
    this.#ticker = setInterval(() => {
      const now = performance.now();
      for (const socket of this.#sockets) socket.tick(now);
    }, TICK_MS);
    this.#accepting = this.#acceptLoop();
  }

  /** The address it listens on. */
  get addr(): Deno.NetAddr {
    return this.#listener.addr as Deno.NetAddr;
  }

  /** Connections open now. */
  get connections(): number {
    return this.#sockets.size;
  }

  async #acceptLoop(): Promise<void> {
    const max = this.#options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    while (!this.#closing) {
      let conn: Deno.TcpConn | Deno.TlsConn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#closing || error instanceof Deno.errors.BadResource) return;
        this.#options.onAcceptError?.(error instanceof Error ? error : new Error(String(error)));
        await new Promise((resolve) => setTimeout(resolve, ACCEPT_RETRY_MS));
        continue;
      }
      if (this.#sockets.size >= max) {
        conn.close();
        continue;
      }
      this.#serve(conn);
    }
  }

  #serve(conn: Deno.TcpConn | Deno.TlsConn): void {
    try {
      if ("setNoDelay" in conn) conn.setNoDelay(true);
    } catch {
      // A socket reset before this point: the first read will say so.
    }
    const remote = conn.remoteAddr as Deno.NetAddr;
    const peer = `${remote.hostname}:${remote.port}`;
    const socket = new ConnectionSocket(conn, (hooks) =>
      new Http2Connection("server", {
        ...hooks,
        stream: this.#options.handler,
      }, this.#options.limits ?? DEFAULT_LIMITS));
    this.#sockets.add(socket);
    socket.run().finally(() => {
      this.#sockets.delete(socket);
      const end = socket.end;
      if (end && end.code !== ErrorCode.NO_ERROR) this.#options.onConnectionError?.(peer, end);
    });
  }

  /**
   * Stops accepting, sends GOAWAY on every connection so that calls in
   * flight finish, and closes what is still open after `graceMs`.
   */
  async close(graceMs: number): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    this.#listener.close();
    await this.#accepting;
    for (const socket of this.#sockets) socket.connection.goAway("the server is shutting down");
    const drained = Promise.all([...this.#sockets].map((socket) => socket.done));
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([drained, new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
    for (const socket of this.#sockets) socket.close("the server shut down");
    clearInterval(this.#ticker);
  }
}
