/**
 * An HTTP/2 client over cleartext TCP with prior knowledge (h2c), for gRPC
 * calls to one endpoint: connections opened when a request finds none with
 * room, and replaced when they have ended or are going away, so a client
 * outlives restarts of the server it talks to.
 *
 * @module
 */
import { type ConnectionLimits, DEFAULT_LIMITS, Http2Connection } from "./connection.ts";
import type { HeaderField } from "./hpack.ts";
import { ConnectionSocket } from "./socket.ts";
import type { Http2Stream } from "./stream.ts";

/** The endpoint could not be connected to; `cause` is the socket's error. */
export class DialError extends Error {
  override name = "DialError";
}

const TICK_MS = 1_000;

/** A client's TLS: the PEM CA certificates it trusts (the system's when absent), and its own certificate and key for a server that asks for one. */
export interface ClientTls {
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
}

/** A client of one HTTP/2 endpoint. */
export class Http2Client {
  readonly #hostname: string;
  readonly #port: number;
  readonly #limits: ConnectionLimits;
  readonly #sockets = new Set<ConnectionSocket>();
  /** The one dial in progress: callers that find no room wait for it together. */
  #dialing: Promise<void> | undefined;
  #ticker: ReturnType<typeof setInterval> | undefined;
  #closed = false;
  readonly #tls: ClientTls | undefined;

  /** `tls`: speak TLS (HTTP/2 by ALPN). */
  constructor(
    hostname: string,
    port: number,
    limits: ConnectionLimits = DEFAULT_LIMITS,
    tls?: ClientTls,
  ) {
    this.#hostname = hostname;
    this.#port = port;
    this.#limits = limits;
    this.#tls = tls;
  }

  /** `host:port`, as `:authority`. */
  get authority(): string {
    return `${this.#hostname.includes(":") ? `[${this.#hostname}]` : this.#hostname}:${this.#port}`;
  }

  /**
   * Opens a stream with `headers` on a connection with room for it,
   * connecting when none has (the server's stream limit is per connection);
   * rejects with {@linkcode DialError} when no connection can be made.
   */
  async open(headers: readonly HeaderField[]): Promise<Http2Stream> {
    while (true) {
      if (this.#closed) throw new DialError("the client is closed");
      for (const socket of this.#sockets) {
        if (socket.connection.canOpenStream) return socket.connection.openStream(headers, false);
      }
      this.#dialing ??= this.#dial().finally(() => (this.#dialing = undefined));
      await this.#dialing;
    }
  }

  async #dial(): Promise<void> {
    let conn: Deno.TcpConn | Deno.TlsConn;
    try {
      if (this.#tls) {
        const { ca, cert, key } = this.#tls;
        const tls = await Deno.connectTls({
          hostname: this.#hostname,
          port: this.#port,
          caCerts: ca === undefined ? undefined : [ca],
          ...(cert !== undefined && key !== undefined ? { cert, key } : {}),
          alpnProtocols: ["h2"],
        });
        conn = tls;
        // The handshake's failure (an untrusted certificate, a plaintext server) is the dial's.
        await tls.handshake().catch((error) => {
          tls.close();
          throw new Error(`TLS handshake failed: ${error instanceof Error ? error.message : String(error)}`, {
            cause: error,
          });
        });
      } else {
        conn = await Deno.connect({ hostname: this.#hostname, port: this.#port });
        conn.setNoDelay(true);
      }
    } catch (error) {
      throw new DialError(error instanceof Error ? error.message : String(error), { cause: error });
    }
    if (this.#closed) {
      conn.close();
      throw new DialError("the client is closed");
    }
    const socket = new ConnectionSocket(conn, (hooks) => new Http2Connection("client", hooks, this.#limits));
    this.#sockets.add(socket);
    socket.run().finally(() => this.#sockets.delete(socket));
    this.#ticker ??= setInterval(() => this.#tick(performance.now()), TICK_MS);
    // Keepalive alone must not keep a program alive that is otherwise done.
    Deno.unrefTimer(this.#ticker);
  }

  /** Keepalive on every connection; connections opened for a burst go once idle, all but one. */
  #tick(now: number): void {
    let kept = false;
    for (const socket of this.#sockets) {
      socket.tick(now);
      const connection = socket.connection;
      if (!connection.canOpenStream) continue;
      if (kept && connection.openStreams === 0) connection.goAway("idle");
      else kept = true;
    }
  }

  /** Closes every connection; calls in flight fail. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#ticker);
    for (const socket of this.#sockets) socket.close("the client closed");
  }
}
