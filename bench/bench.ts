/** `npm run bench`: every benchmark side by side, printed as tables with ratios. */
import { benchProxy } from "./proxy-bench.js";
import { benchFilter } from "./filter-bench.js";
import { benchFlowFiles } from "./flowfile-bench.js";
import { benchSqlite } from "./sqlite-bench.js";
import { benchShaping } from "./shaping-bench.js";
import { benchRetries } from "./retries-bench.js";
import { benchHardening } from "./hardening-bench.js";
import { benchWeb } from "./web-bench.js";
import { benchSoak } from "./soak-bench.js";
import { benchHostnames } from "./hostnames-bench.js";
import { benchFleet } from "./fleet-bench.js";

const suites: [string, () => Promise<string>, string][] = [
  ["proxy", benchProxy, "requests/s and latency direct, through sluice and mitmdump; HTTPS; 1 GiB transfer"],
  ["filter", benchFilter, "filter expressions matched per second"],
  ["flowfile", benchFlowFiles, "flow files written and read, against mitmproxy's own code"],
  ["sqlite", benchSqlite, "SQLite captures: 1,000,000 flows loaded (SLUICE_BENCH_FLOWS=N for fewer), filtered queries"],
  ["shaping", benchShaping, "a scanner against a throttling EC2 origin: no shaping, blanket latency, a rate queue"],
  ["hardening", benchHardening, "a -w soak (SLUICE_SOAK_SECONDS, default 600): RSS and flows lost; new TLS hostnames/s; 10,000 idle connections"],
  ["soak", benchSoak, "steady mixed traffic through sluice dump -w for 10 minutes (--minutes N): RSS every 10 s, slope, flows lost"],
  ["hostnames", benchHostnames, "new TLS hostnames per second through CONNECT, and where a new name's time goes (context, signing)"],
  ["fleet", benchFleet, "three processes sharing budgets through Redis: admitted vs configured at 10, 100, 1,000/s, round trips per request, cost of a shared rule"],
  ["retries", benchRetries, "invocation tracker and `sluice report` speed and memory"],
  ["web", benchWeb, "the web UI in chromium with 100,000 flows (SLUICE_BENCH_FLOWS=N): interactive, filter, scroll, memory; proxy req/s with the UI open"],
];
const usage = `usage: npm run bench [-- NAME] [--minutes N]\n\nRuns every benchmark, or only NAME:\n${suites.map(([n, , h]) => `  ${n.padEnd(9)} ${h}`).join("\n")}\n`;

// `npm run bench -- --minutes 5` names no benchmark: options are not names.
const first = process.argv[2];
const only = first?.startsWith("--") && first !== "--help" ? undefined : first;
if (only === "--help" || only === "-h") {
  process.stdout.write(usage);
} else if (only !== undefined && !suites.some(([name]) => name === only)) {
  process.stderr.write(`bench: no benchmark named ${JSON.stringify(only)}\n\n${usage}`);
  process.exitCode = 2;
} else {
  for (const [name, fn] of suites) {
    if (only && only !== name) continue;
    process.stdout.write(`\n=== ${name} ===\n`);
    try {
      process.stdout.write((await fn()) + "\n");
    } catch (err) {
      process.stdout.write(`${name} benchmark failed: ${(err as Error).message}\n`);
      process.exitCode = 1;
    }
  }
}
