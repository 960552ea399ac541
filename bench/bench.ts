/** `npm run bench`: every benchmark side by side, printed as tables with ratios. */
import { benchProxy } from "./proxy-bench.js";
import { benchFilter } from "./filter-bench.js";
import { benchFlowFiles } from "./flowfile-bench.js";
import { benchSqlite } from "./sqlite-bench.js";
import { benchShaping } from "./shaping-bench.js";
import { benchRetries } from "./retries-bench.js";

const only = process.argv[2];
const suites: [string, () => Promise<string>][] = [
  ["proxy", benchProxy],
  ["filter", benchFilter],
  ["flowfile", benchFlowFiles],
  ["sqlite", benchSqlite],
  ["shaping", benchShaping],
  ["retries", benchRetries],
];

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
