/**
 * An HTTP/2 client over cleartext TCP with prior knowledge (h2c), for gRPC
 * calls to one endpoint: one connection at a time, opened when a request
 * needs it and replaced when it has ended or is going away, so a client
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

/** A client of one HTTP/2 endpoint. */
export class Http2Client {
  readonly #hostname: string;
  readonly #port: number;
  readonly #limits: ConnectionLimits;
  #current: Promise<ConnectionSocket> | undefined;
  #ticker: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  constructor(hostname: string, port: number, limits: ConnectionLimits = DEFAULT_LIMITS) {
    this.#hostname = hostname;
    this.#port = port;
    this.#limits = limits;
  }

  /** `host:port`, as `:authority`. */
  get authority(): string {
    return `${this.#hostname.includes(":") ? `[${this.#hostname}]` : this.#hostname}:${this.#port}`;
  }

  /** Opens a stream with `headers`; rejects with {@linkcode DialError} when no connection can be made. */
  async open(headers: readonly HeaderField[]): Promise<Http2Stream> {
    const socket = await this.#connection();
    return socket.connection.openStream(headers, false);
  }

  async #connection(): Promise<ConnectionSocket> {
    if (this.#closed) throw new DialError("the client is closed");
    const current = this.#current && await this.#current.catch(() => undefined);
    if (current && current.connection.canOpenStream) return current;
    this.#current = this.#dial();
    try {
      return await this.#current;
    } catch (error) {
      this.#current = undefined;
      throw error;
    }
  }

  async #dial(): Promise<ConnectionSocket> {
    let conn: Deno.TcpConn;
    try {
      conn = await Deno.connect({ hostname: this.#hostname, port: this.#port });
    } catch (error) {
      throw new DialError(error instanceof Error ? error.message : String(error), { cause: error });
    }
    conn.setNoDelay(true);
    const socket = new ConnectionSocket(conn, (hooks) => new Http2Connection("client", hooks, this.#limits));
    socket.run();
    if (this.#ticker === undefined) {
      this.#ticker = setInterval(() => {
        this.#current?.then((s) => s.tick(performance.now()), () => {});
      }, TICK_MS);
      // Keepalive alone must not keep a program alive that is otherwise done.
      Deno.unrefTimer(this.#ticker);
    }
    return socket;
  }

  /** Closes the connection; calls in flight fail. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#ticker);
    this.#current?.then((socket) => socket.close("the client closed"), () => {});
  }
}
