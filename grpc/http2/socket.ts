/**
 * The I/O of one HTTP/2 connection: a reader that hands every byte the socket
 * gives to the connection's state machine, and a writer that writes what the
 * state machine produced, one write at a time. Nothing here decides anything
 * about the protocol, and nothing that happens on the socket escapes it: a
 * failed read or write ends this connection.
 *
 * @module
 */
import type { ConnectionEnd, Http2Connection } from "./connection.ts";

/** How long an ended connection may take to write its last frames (GOAWAY) before the socket is closed anyway. */
export const CLOSE_GRACE_MS = 5_000;

const READ_BUFFER_BYTES = 64 << 10;

/** What a connection needs of its socket: Deno's TCP and TLS connections have it, and so do a mutual TLS listener's. */
export interface ByteConn {
  readonly remoteAddr: Deno.Addr;
  read(into: Uint8Array): Promise<number | null>;
  write(bytes: Uint8Array): Promise<number>;
  close(): void;
  setNoDelay?(noDelay: boolean): void;
}

/** Drives one connection over one socket. */
export class ConnectionSocket {
  readonly #conn: ByteConn;
  readonly #h2: Http2Connection;
  #writing = false;
  #closed = false;
  #ended: ConnectionEnd | undefined;
  #endedAt = 0;
  readonly #done: Promise<void>;
  #resolveDone!: () => void;

  /**
   * @param conn the socket, already connected
   * @param connect builds the state machine with the hooks this socket gives it
   */
  constructor(
    conn: ByteConn,
    connect: (hooks: { writable(): void; closed(end: ConnectionEnd): void }) => Http2Connection,
  ) {
    this.#conn = conn;
    this.#done = new Promise((resolve) => (this.#resolveDone = resolve));
    this.#h2 = connect({
      writable: () => this.#flush(),
      closed: (end) => {
        this.#ended = end;
        this.#endedAt = performance.now();
        this.#flush();
      },
    });
  }

  /** The state machine. */
  get connection(): Http2Connection {
    return this.#h2;
  }

  /** How the connection ended, once it has. */
  get end(): ConnectionEnd | undefined {
    return this.#ended;
  }

  /** Resolves once the socket is closed. */
  get done(): Promise<void> {
    return this.#done;
  }

  /** Starts the connection and reads until the socket ends. */
  async run(): Promise<void> {
    this.#h2.start(performance.now());
    const buffer = new Uint8Array(READ_BUFFER_BYTES);
    try {
      while (!this.#closed) {
        const n = await this.#conn.read(buffer);
        if (n === null) {
          this.#h2.socketClosed("the peer closed the connection");
          break;
        }
        // The frame decoder copies what it keeps, so the buffer can be read into again.
        this.#h2.receive(buffer.subarray(0, n), performance.now());
      }
    } catch (error) {
      this.#h2.socketClosed(this.#closed ? "closed" : `the connection failed: ${describe(error)}`);
    }
    await this.#done;
  }

  /** Time passes: keepalive and the handshake's deadline; a socket whose last write hangs is closed. */
  tick(now: number): void {
    this.#h2.tick(now);
    if (this.#ended && now - this.#endedAt > CLOSE_GRACE_MS) this.#closeSocket();
  }

  /** Closes the socket at once; the connection's streams fail. */
  close(reason: string): void {
    this.#h2.socketClosed(reason);
    this.#closeSocket();
  }

  #flush(): void {
    if (this.#writing || this.#closed) return;
    this.#writing = true;
    queueMicrotask(() => this.#writeLoop());
  }

  async #writeLoop(): Promise<void> {
    try {
      while (!this.#closed) {
        const bytes = this.#h2.takeOutput();
        if (!bytes) break;
        for (let at = 0; at < bytes.length;) at += await this.#conn.write(bytes.subarray(at));
      }
    } catch (error) {
      this.#writing = false;
      this.#h2.socketClosed(`a write failed: ${describe(error)}`);
      this.#closeSocket();
      return;
    }
    this.#writing = false;
    if (this.#h2.pendingOutput > 0) return this.#flush();
    if (this.#h2.ended) this.#closeSocket();
  }

  #closeSocket(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // Already closed by the peer's reset; nothing is left to release.
    }
    this.#resolveDone();
  }
}

function describe(error: unknown): string {
  // rustls ends some messages with a link to its manual, which says nothing to the user of a command.
  return (error instanceof Error ? error.message : String(error)).replace(/: https:\/\/docs\.rs\/\S+$/, "");
}
