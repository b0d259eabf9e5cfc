/**
 * An HTTP/2 server over cleartext TCP with prior knowledge (h2c), as gRPC
 * clients speak it, or over TLS (h2 by ALPN), mutual if asked: it accepts connections, gives each its own state machine
 * and socket loop, and hands every request stream to one handler. A
 * connection that misbehaves ends alone; accept errors (out of file
 * descriptors, say) are logged and retried; nothing a client does reaches
 * the process.
 *
 * @module
 */
import { type ConnectionEnd, type ConnectionLimits, DEFAULT_LIMITS, Http2Connection } from "./connection.ts";
import { ErrorCode } from "./frame.ts";
import { MutualTlsListener } from "./mutual_tls_listener.ts";
import { type ByteConn, ConnectionSocket } from "./socket.ts";
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
  /** Serve over TLS (HTTP/2 negotiated by ALPN). */
  readonly tls?: ServerTls;
  /** A client refused during the TLS handshake (mutual TLS), for a log line. */
  readonly onTlsRefused?: (peer: string, reason: string) => void;
}

/** A server's TLS: its PEM certificate chain and key, and the CA that must have signed every client's certificate (mutual TLS) if any. */
export interface ServerTls {
  readonly cert: string;
  readonly key: string;
  readonly clientCa?: string;
}

/** Where connections come from: `Deno.listen`, `Deno.listenTls`, or a {@linkcode MutualTlsListener}. */
interface Listener {
  readonly addr: Deno.Addr;
  accept(): Promise<ByteConn>;
  close(): void;
}

/** Default for {@linkcode Http2ServerOptions.maxConnections}. */
export const DEFAULT_MAX_CONNECTIONS = 10_000;

const TICK_MS = 1_000;
const ACCEPT_RETRY_MS = 100;

/** A running HTTP/2 server. */
export class Http2Server {
  readonly #listener: Listener;
  readonly #options: Http2ServerOptions;
  readonly #sockets = new Set<ConnectionSocket>();
  readonly #ticker: ReturnType<typeof setInterval>;
  #closing = false;
  readonly #accepting: Promise<void>;

  /**
   * Binds and starts accepting; rejects with what `Deno.listen` throws (a
   * port in use: `Deno.errors.AddrInUse`). Mutual TLS stands on `node:tls`,
   * because `Deno.listenTls` cannot ask for a client certificate.
   */
  static async listen(options: Http2ServerOptions): Promise<Http2Server> {
    const { hostname, port, tls } = options;
    const alpnProtocols = ["h2"];
    if (tls?.clientCa !== undefined) {
      const { cert, key, clientCa } = tls;
      const onRefused = options.onTlsRefused;
      return new Http2Server(
        options,
        await MutualTlsListener.listen({ hostname, port, cert, key, clientCa, alpnProtocols, onRefused }),
      );
    }
    const listener = tls
      ? Deno.listenTls({ hostname, port, cert: tls.cert, key: tls.key, alpnProtocols })
      : Deno.listen({ hostname, port });
    return new Http2Server(options, listener);
  }

  private constructor(options: Http2ServerOptions, listener: Listener) {
    this.#options = options;
    this.#listener = listener;
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
      let conn: ByteConn;
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

  #serve(conn: ByteConn): void {
    try {
      conn.setNoDelay?.(true);
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
