/**
 * One option given two ways on one command line: a list keeps every item (as mitmproxy's --set
 * appends to a flag's list), a single value given twice differently is refused in one line —
 * never one of them dropped unseen.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "./support/run.js";
import { SLUICE_BIN, spawnSluice } from "./support/cli.js";
import { startOrigin } from "./support/origins.js";
import { needs } from "./support/needs.js";

test("--set scripts=A -s B loads both scripts; --set modify_headers=X -H Y applies both", { skip: needs("curl", "curl") }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-flag-lists-"));
  for (const name of ["a", "b"]) writeFileSync(join(dir, `${name}.js`), `export default { request(flow) { flow.request.headers.set("x-script-${name}", "1"); } };\n`);
  const origin = await startOrigin();
  const proc = await spawnSluice(["dump", "-p", "0", "--confdir", dir, "--set", `scripts=${join(dir, "a.js")}`, "-s", join(dir, "b.js"), "--set", "modify_headers=[\"|~q|x-set|1\"]", "-H", "|~q|x-flag|1"]);
  try {
    const r = await run("curl", ["-sS", "--max-time", "20", "--noproxy", "", "-x", `http://127.0.0.1:${proc.port}`, `${origin.url}/both`]);
    assert.equal(r.code, 0, r.stderr + proc.stderr());
    const headers = origin.requests.at(-1)!.headers;
    for (const h of ["x-script-a", "x-script-b", "x-set", "x-flag"]) assert.equal(headers[h], "1", `${h}: ${JSON.stringify(headers)}`);
  } finally {
    await proc.stop();
    await origin.close();
  }
});

test("a one-value flag given twice, or given with --set of another value, is refused in one line", async () => {
  for (const [args, says] of [
    [["-w", "a.mitm", "-w", "b.mitm"], /^sluice: -w is given twice \(-w a\.mitm and -w b\.mitm\) and takes one value: give it once\n$/],
    [["--save-stream-file", "a.mitm", "-w", "b.mitm"], /^sluice: -w is given twice \(--save-stream-file a\.mitm and -w b\.mitm\)/],
    [["-p", "0", "-p", "8081"], /^sluice: -p is given twice \(-p 0 and -p 8081\)/],
    [["--intercept", "~q", "--intercept", "~s"], /^sluice: --intercept is given twice/],
    [["-p", "0", "--set", "listen_port=8082"], /^sluice: -p 0 and --set listen_port=8082 disagree: give one\n$/],
    [["-p", "0", "-k", "--set", "ssl_insecure=false"], /^sluice: -k and --set ssl_insecure=false disagree: give one\n$/],
    [["-p", "0", "-w", "a.mitm", "--set", "save_stream_file=b.mitm"], /^sluice: -w a\.mitm and --set save_stream_file=b\.mitm disagree: give one\n$/],
  ] as [string[], RegExp][]) {
    const r = await run(process.execPath, [SLUICE_BIN, "dump", ...args], { timeoutMs: 30_000 });
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, says, args.join(" "));
  }
});
