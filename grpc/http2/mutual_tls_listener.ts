/**
 * A TLS listener that requires every client to present a certificate signed
 * by a given CA (mutual TLS). `Deno.listenTls` cannot ask for a client
 * certificate, so this one stands on `node:tls`, whose server verifies it;
 * each accepted socket is handed out as a {@linkcode ByteConn}, read and
 * written like a Deno connection. A client without an acceptable
 * certificate never reaches the caller: its handshake fails here, and
 * `onRefused` says why.
 *
 * @module
 */
import tls from "node:tls";
import type { ByteConn } from "./socket.ts";

/** How a mutual TLS listener is set up. */
export interface MutualTlsOptions {
  readonly hostname: string;
  readonly port: number;
  /** This server's PEM certificate chain and key. */
  readonly cert: string;
  readonly key: string;
  /** PEM certificates of the CAs that sign the clients' certificates. */
  readonly clientCa: string;
  readonly alpnProtocols: string[];
  /** A client refused during the handshake (no certificate, an untrusted one), for a log line. */
  readonly onRefused?: (peer: string, reason: string) => void;
}

/** Incoming bytes buffered per connection before the socket is paused. */
const READ_HIGH_WATER = 1 << 20;

/** Listens with `node:tls`, handing out verified connections one `accept()` at a time. */
export class MutualTlsListener {
  readonly #server: tls.Server;
  readonly #ready: ByteConn[] = [];
  #waiting: { resolve(conn: ByteConn): void; reject(error: Error): void } | undefined;
  #closed = false;

  private constructor(server: tls.Server) {
    this.#server = server;
  }

  /** Binds; rejects with `Deno.errors.AddrInUse` when the port is taken, as `Deno.listen` throws. */
  static async listen(options: MutualTlsOptions): Promise<MutualTlsListener> {
    const server = tls.createServer({
      cert: options.cert,
      key: options.key,
      ca: options.clientCa,
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: options.alpnProtocols,
    });
    const listener = new MutualTlsListener(server);
    server.on("secureConnection", (socket) => listener.#accepted(socket));
    server.on("tlsClientError", (error, socket) => {
      options.onRefused?.(peerOf(socket), error.message);
      socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", (error: NodeJS.ErrnoException) => {
        reject(error.code === "EADDRINUSE" ? new Deno.errors.AddrInUse(error.message) : error);
      });
      server.listen({ host: options.hostname, port: options.port }, () => resolve());
    });
    // After binding, a server error (the descriptor limit, say) must not escape as an uncaught event.
    server.removeAllListeners("error");
    server.on("error", () => {});
    return listener;
  }

  /** The address it listens on. */
  get addr(): Deno.NetAddr {
    const address = this.#server.address();
    if (address === null || typeof address === "string") throw new Deno.errors.BadResource("the listener is closed");
    return { transport: "tcp", hostname: address.address, port: address.port };
  }

  /** The next verified connection; throws `Deno.errors.BadResource` once closed. */
  accept(): Promise<ByteConn> {
    const next = this.#ready.shift();
    if (next) return Promise.resolve(next);
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("the listener is closed"));
    return new Promise((resolve, reject) => (this.#waiting = { resolve, reject }));
  }

  /** Stops listening; connections already accepted stay open. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#server.close();
    for (const conn of this.#ready.splice(0)) conn.close();
    this.#waiting?.reject(new Deno.errors.BadResource("the listener is closed"));
    this.#waiting = undefined;
  }

  #accepted(socket: tls.TLSSocket): void {
    if (this.#closed) return void socket.destroy();
    const conn = new NodeSocketConn(socket);
    const waiting = this.#waiting;
    this.#waiting = undefined;
    if (waiting) waiting.resolve(conn);
    else this.#ready.push(conn);
  }
}

/** The peer's address, in the form Deno gives it (no IPv4-mapped prefix). */
function addressOf(socket: tls.TLSSocket): { hostname: string; port: number } {
  // Deno's node:tls knows the address of a socket whose handshake failed only on the TCP socket beneath it.
  const parent = (socket as { _parent?: { remoteAddress?: string; remotePort?: number } })._parent;
  const hostname = socket.remoteAddress ?? parent?.remoteAddress ?? "unknown";
  return { hostname: hostname.replace(/^::ffff:/, ""), port: socket.remotePort ?? parent?.remotePort ?? 0 };
}

function peerOf(socket: tls.TLSSocket): string {
  const { hostname, port } = addressOf(socket);
  return `${hostname}:${port}`;
}

/** A `node:tls` socket read and written like a Deno connection. */
class NodeSocketConn implements ByteConn {
  readonly remoteAddr: Deno.NetAddr;
  readonly #socket: tls.TLSSocket;
  readonly #chunks: Uint8Array[] = [];
  #buffered = 0;
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;

  constructor(socket: tls.TLSSocket) {
    this.#socket = socket;
    const peer = addressOf(socket);
    this.remoteAddr = { transport: "tcp", hostname: peer.hostname, port: peer.port };
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(chunk);
      this.#buffered += chunk.length;
      if (this.#buffered > READ_HIGH_WATER) socket.pause();
      this.#wakeReader();
    });
    socket.on("end", () => this.#finish());
    socket.on("close", () => this.#finish());
    socket.on("error", (error: Error) => this.#finish(error));
  }

  async read(into: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
    let n = 0;
    while (n < into.length && this.#chunks.length > 0) {
      const chunk = this.#chunks[0];
      const take = Math.min(chunk.length, into.length - n);
      into.set(chunk.subarray(0, take), n);
      n += take;
      if (take === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(take);
    }
    this.#buffered -= n;
    if (this.#buffered <= READ_HIGH_WATER) this.#socket.resume();
    return n;
  }

  write(bytes: Uint8Array): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#socket.write(bytes, (error) => (error ? reject(error) : resolve(bytes.length)));
    });
  }

  setNoDelay(noDelay: boolean): void {
    this.#socket.setNoDelay(noDelay);
  }

  close(): void {
    this.#socket.destroy();
    this.#finish();
  }

  #finish(error?: Error): void {
    this.#ended = true;
    this.#error ??= error;
    this.#wakeReader();
  }

  #wakeReader(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}
