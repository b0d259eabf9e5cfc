/**
 * Cutting one node's cluster links on loopback, both ways, and nothing else
 * (not its Kafka connections, not the test's own requests): the node runs
 * under a group id of its own (`setpriv --regid`), and iptables marks every
 * connection it opens to a peer's remoting port, and every connection a peer
 * opens to its own, then drops every packet of a marked connection. Needs
 * root (or password-less sudo) and iptables with the owner and connmark
 * matches.
 *
 * @module
 */

/** The group id a cut node runs under. */
export const CUT_GID = 47_331;

/** `setpriv` arguments that run a command under {@linkcode CUT_GID}. */
export const CUT_PREFIX: readonly string[] = ["setpriv", `--regid=${CUT_GID}`, "--clear-groups"];

const MARK = "0x5ca1";

async function iptables(table: string, ...args: string[]): Promise<void> {
  const sudo = Deno.uid() === 0 ? [] : ["sudo", "-n"];
  const command = [...sudo, "iptables", "-w", "-t", table, ...args];
  const output = await new Deno.Command(command[0], { args: command.slice(1), stderr: "piped" }).output();
  if (!output.success) {
    throw new Error(`${command.join(" ")} failed: ${new TextDecoder().decode(output.stderr).trim()}`);
  }
}

/** A cut in force; {@linkcode NetworkCut.heal} ends it. */
export class NetworkCut {
  readonly #chain: string;

  private constructor(chain: string) {
    this.#chain = chain;
  }

  /** Cuts the node running under {@linkcode CUT_GID} with remoting port `port` from the peers' `peerPorts`. */
  static async cut(port: number, peerPorts: readonly number[]): Promise<NetworkCut> {
    const chain = `usershard-cut-${port}`;
    const cut = new NetworkCut(chain);
    for (const table of ["mangle", "filter"]) await iptables(table, "-N", chain);
    try {
      await iptables("mangle", "-A", "OUTPUT", "-o", "lo", "-j", chain);
      await iptables("filter", "-A", "OUTPUT", "-o", "lo", "-j", chain);
      // Its connections to the peers, and the peers' connections to it, marked by their first packet that passes.
      await iptables(
        "mangle",
        ...["-A", chain, "-p", "tcp", "-m", "owner", "--gid-owner", String(CUT_GID)],
        ...["-m", "multiport", "--dports", peerPorts.join(","), "-j", "CONNMARK", "--set-mark", MARK],
      );
      await iptables("mangle", "-A", chain, "-p", "tcp", "--dport", String(port), "-j", "CONNMARK", "--set-mark", MARK);
      // Every packet of a marked connection, either way.
      await iptables("filter", "-A", chain, "-p", "tcp", "-m", "connmark", "--mark", MARK, "-j", "DROP");
    } catch (error) {
      await cut.heal();
      throw error;
    }
    return cut;
  }

  /** Ends the cut (and is harmless when it already ended). */
  async heal(): Promise<void> {
    for (const table of ["filter", "mangle"]) {
      await iptables(table, "-D", "OUTPUT", "-o", "lo", "-j", this.#chain).catch(() => {});
      await iptables(table, "-F", this.#chain).catch(() => {});
      await iptables(table, "-X", this.#chain).catch(() => {});
    }
  }
}
