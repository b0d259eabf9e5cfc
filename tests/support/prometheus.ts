/**
 * What tests check of a `/metrics` page: Prometheus's own linter passes it
 * (`promtool check metrics`), and its samples, parsed from the text format,
 * say what the test expects.
 *
 * @module
 */

/** One sample of a page: `name{labels} value`. */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/;
const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(?:,|$)/y;

/**
 * The samples of a page in Prometheus's text format (comments and blank
 * lines skipped); throws on a line it cannot read.
 *
 * @example
 * ```ts
 * parseMetrics('# TYPE a_total counter\na_total{where="local"} 3\n'); // [{ name: "a_total", labels: { where: "local" }, value: 3 }]
 * ```
 */
export function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "" || line.startsWith("#")) continue;
    const match = SAMPLE.exec(line);
    if (!match) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    const text = match[2] ?? "";
    LABEL.lastIndex = 0;
    while (LABEL.lastIndex < text.length) {
      const label = LABEL.exec(text);
      if (!label) throw new Error(`bad labels in: ${line}`);
      labels[label[1]] = label[2].replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    }
    const value = match[3] === "+Inf" ? Infinity : match[3] === "-Inf" ? -Infinity : Number(match[3]);
    samples.push({ name: match[1], labels, value });
  }
  return samples;
}

/** The samples named `name` whose labels include `labels`. */
export function samplesOf(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): Sample[] {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

/** The sum of {@linkcode samplesOf}. */
export function sumOf(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number {
  return samplesOf(samples, name, labels).reduce((sum, s) => sum + s.value, 0);
}

/**
 * Runs `promtool check metrics` on `page`; throws with promtool's output
 * when it finds a problem, and with how to install it when it is missing.
 */
export async function promtoolCheck(page: string): Promise<void> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("promtool", {
      args: ["check", "metrics"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(
        "promtool is not installed: install Debian's prometheus package (apt-get install prometheus), " +
          "as CI does, to check the /metrics page",
      );
    }
    throw error;
  }
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(page));
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  if (code !== 0) {
    const output = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
    throw new Error(`promtool check metrics exited with ${code}:\n${output}\n--- the page ---\n${page}`);
  }
}
